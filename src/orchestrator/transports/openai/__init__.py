"""The OpenAI-compatible speech API (`/v1/audio/speech`, `/v1/audio/transcriptions`,
`/v1/models`) over the fleet and the ASR service the conversations use: `routes` registers it,
`config` is its section of the orchestrator's config."""
