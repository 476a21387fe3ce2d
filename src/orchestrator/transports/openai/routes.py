"""The OpenAI-compatible routes: their registration, `/v1/models`, and the one wrapper every
`/v1` handler runs in, so none can skip the token, the rate limit or the error shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from voicefleet.orchestrator.access import bearer_token
from voicefleet.orchestrator.transports.openai.context import Handler, OpenAIApi
from voicefleet.orchestrator.transports.openai.errors import ApiError
from voicefleet.orchestrator.transports.openai.speech import speech
from voicefleet.orchestrator.transports.openai.transcription import transcriptions

log = logging.getLogger(__name__)

# Every route of this API, by path: the access middleware lets them through and the wrapper
# checks the token itself, so that a refusal has OpenAI's error shape.
ROUTES = frozenset(
    {"/v1/models", "/v1/models/{model}", "/v1/audio/speech", "/v1/audio/transcriptions"}
)


def add_openai_routes(app: web.Application, api: OpenAIApi) -> None:
    """Register the API's routes on the orchestrator's application."""
    app.router.add_get("/v1/models", _guarded(api, "models", list_models))
    app.router.add_get("/v1/models/{model}", _guarded(api, "models", retrieve_model))
    app.router.add_post("/v1/audio/speech", _guarded(api, "speech", speech))
    app.router.add_post("/v1/audio/transcriptions", _guarded(api, "transcriptions", transcriptions))


def _guarded(
    api: OpenAIApi, name: str, handler: Handler
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            _admit(api, request)
            response = await handler(api, request)
        except ApiError as error:
            if error.status >= 500 or error.status == 429:
                log.warning("%s %s: %d %s", request.method, request.path, error.status, error)
            response = error.response()
        except web.HTTPRequestEntityTooLarge as error:
            response = ApiError(413, f"the request body is too large ({error.text})").response()
        api.services.metrics.api_requests.labels(api=name, status=str(response.status)).inc()
        return response

    return run


def _admit(api: OpenAIApi, request: web.Request) -> None:
    """The token (when one is configured), then the per-address rate."""
    if api.access is not None:
        presented = bearer_token(request)
        if not api.access.matches(presented):
            why = "no Authorization: Bearer token" if presented is None else "wrong token"
            raise ApiError(
                401, f"{why} (this server needs http.auth_token)", code="invalid_api_key"
            )
    wait_s = api.rate.admit(api.addresses.of(request))
    if wait_s is not None:
        raise ApiError(
            429,
            f"too many requests from this address; retry in {wait_s:.1f} s",
            code="rate_limit_exceeded",
        )


def _model(model_id: str, owned_by: str, created: int, **extra: object) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by, **extra}


def model_list(api: OpenAIApi) -> list[dict[str, object]]:
    """Every model name the API accepts, each saying what it is (`voicefleet` fields)."""
    created = int(api.started)
    voices = sorted(set(api.fleet_voices()) | set(api.config.voice_aliases))
    entries = [
        _model(alias, "voicefleet", created, voicefleet={"kind": "speech", "voices": voices})
        for alias in api.config.speech_models
    ]
    for model, model_voices in sorted(api.fleet_models().items()):
        entries.append(
            _model(
                model, "voicefleet", created, voicefleet={"kind": "speech", "voices": model_voices}
            )
        )
    asr = api.asr_model()
    for name in [*api.config.transcription_models, asr]:
        entries.append(
            _model(name, "voicefleet", created, voicefleet={"kind": "transcription", "model": asr})
        )
    return entries


async def list_models(api: OpenAIApi, _request: web.Request) -> web.StreamResponse:
    """GET /v1/models."""
    return web.json_response({"object": "list", "data": model_list(api)})


async def retrieve_model(api: OpenAIApi, request: web.Request) -> web.StreamResponse:
    """GET /v1/models/{model}."""
    wanted = request.match_info["model"]
    for entry in model_list(api):
        if entry["id"] == wanted:
            return web.json_response(entry)
    raise ApiError(
        404, f"the model {wanted!r} does not exist", code="model_not_found", param="model"
    )
