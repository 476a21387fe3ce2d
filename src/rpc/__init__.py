"""The contracts between tiers: the gRPC ABI (tts.proto) and the Redis registry schema."""
