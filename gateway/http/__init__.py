"""What every route family shares and none owns: reading a body into a strict pydantic model, the
SSE framing, and the one generation path (generation.py) that runs a request's stream."""
