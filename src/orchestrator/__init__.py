"""The orchestrator tier: transports, VAD, ASR, session state machine, responder, router."""
