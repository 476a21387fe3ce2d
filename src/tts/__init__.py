"""The TTS worker tier: gRPC servicer, model manager, adapters, registration."""
