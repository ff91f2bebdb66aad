"""Routes in llama.cpp server's shapes, for scripts written against it."""
