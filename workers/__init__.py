"""The worker process: one model, one engine, a ZeroMQ DEALER loop. Never imports aiohttp."""
