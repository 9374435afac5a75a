"""Speech-to-text for voice notes through any OpenAI-compatible transcription endpoint
(`POST {base}/v1/audio/transcriptions`, multipart `file` and `model`, answer `{"text": ...}`):
OpenAI itself, a provider speaking the same API, or a self-hosted Whisper server.
OpenAI takes files up to 25 MB (flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm)."""

from __future__ import annotations

import httpx
from tistis_common.settings import Settings

MAX_BYTES = 25 * 1024 * 1024
EXTENSIONS = {"audio/ogg": "ogg", "audio/opus": "ogg", "audio/mpeg": "mp3", "audio/mp4": "m4a",
              "audio/aac": "m4a", "audio/amr": "amr", "audio/wav": "wav", "audio/webm": "webm"}


class TranscriptionFailed(Exception):
    pass


class Transcriber:
    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str | None, model: str,
                 timeout: float):
        self.http = http
        self.url = f"{base_url.rstrip('/')}/v1/audio/transcriptions"
        self.api_key = api_key
        self.model = model
        self.timeout = timeout

    @classmethod
    def from_settings(cls, http: httpx.AsyncClient, settings: Settings) -> Transcriber | None:
        """None without TRANSCRIPTION_BASE_URL: voice notes are kept, not transcribed."""
        if not settings.transcription_base_url:
            return None
        return cls(http, settings.transcription_base_url, settings.transcription_api_key,
                   settings.transcription_model, settings.transcription_timeout_seconds)

    async def transcribe(self, data: bytes, mime_type: str) -> str:
        if len(data) > MAX_BYTES:
            raise TranscriptionFailed(f"{len(data)} bytes: over the 25 MB the API takes")
        # The service tells the format by the file name's extension.
        name = f"voice-note.{EXTENSIONS.get(mime_type, 'ogg')}"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            answer = await self.http.post(
                self.url, headers=headers, timeout=self.timeout,
                files={"file": (name, data, mime_type)},
                data={"model": self.model, "response_format": "json"},
            )
        except httpx.HTTPError as exc:
            raise TranscriptionFailed(f"transport: {type(exc).__name__}") from exc
        if answer.status_code != 200:
            raise TranscriptionFailed(f"HTTP {answer.status_code}: {answer.text[:200]}")
        try:
            text = answer.json()["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TranscriptionFailed("answer without a text") from exc
        if not isinstance(text, str):
            raise TranscriptionFailed("answer without a text")
        return text
