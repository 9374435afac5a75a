"""`tistis-sandbox`: serve the fake platforms, or play a patient against the ingress.

    tistis-sandbox serve --port 9100
    tistis-sandbox play "Hola, quiero una cita" --channel whatsapp --tenant esva-dental
    tistis-sandbox play "¿Esto es una caries?" --file foto-muela.png     (or referencia.pdf,
                                        nota-de-voz.ogg, or a path): the patient sends a file
"""

from __future__ import annotations

import json
import os
import time
from enum import StrEnum
from typing import Annotated, Any

import httpx
import typer

from tistis_sandbox import webhooks

app = typer.Typer(help="Local fake of WhatsApp, Messenger/Instagram, TikTok and Anthropic.",
                  no_args_is_help=True, add_completion=False)


class ChannelName(StrEnum):
    whatsapp = "whatsapp"
    facebook = "facebook"
    messenger = "messenger"
    instagram = "instagram"
    tiktok = "tiktok"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9100,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    status_webhook: Annotated[str | None, typer.Option(
        help="Ingress URL that receives WhatsApp status webhooks (sent/delivered/read) after "
             "each accepted send, signed with META_APP_SECRET.")] = None,
    demo_brain: Annotated[bool, typer.Option(
        help="Answer the assistant's tools with the demo brain (a fake model, labelled "
             "'[demo]': quotes, menus, bookings, hand-overs).")] = False,
) -> None:
    """Serve the fakes (point the *_BASE_URL settings at http://HOST:PORT)."""
    import uvicorn

    from tistis_sandbox.app import create_app
    from tistis_sandbox.callbacks import Callback
    from tistis_sandbox.recorder import Recorder

    recorder = Recorder(demo_brain=demo_brain)
    if status_webhook:
        secret = os.environ.get("META_APP_SECRET") or webhooks.DEFAULT_SECRET
        recorder.callbacks["whatsapp"] = Callback(url=status_webhook, app_secret=secret)
    # No proxy in front of a local fake: skip uvicorn's X-Forwarded-* pass on every request.
    uvicorn.run(create_app(recorder), host=host, port=port, log_level=log_level,
                proxy_headers=False)


def _kind(mime_type: str) -> str:
    if mime_type.startswith("image/"):
        return "image"
    return "audio" if mime_type.startswith("audio/") else "document"


def shelve(sandbox: str, file: str) -> dict[str, Any]:
    """A file the sandbox serves as the patient's: a sample by name, or one from disk."""
    from tistis_sandbox.mediahost import SAMPLES

    base = f"{sandbox.rstrip('/')}/_sandbox/media"
    if file in SAMPLES:
        r = httpx.post(base, params={"sample": file}, timeout=10)
    else:
        import mimetypes

        mime = mimetypes.guess_type(file)[0] or "application/octet-stream"
        with open(file, "rb") as f:
            r = httpx.post(base, params={"mime_type": mime}, content=f.read(), timeout=10)
    r.raise_for_status()
    return {**r.json(), "filename": os.path.basename(file)}  # type: ignore[no-any-return]


def build_webhook(channel: ChannelName, text: str, user: str, name: str,
                  account: str | None, media: dict[str, Any] | None = None,
                  ) -> tuple[webhooks.SignedWebhook, str, str]:
    """The signed webhook, the sandbox target the reply will hit, and its recipient id;
    `media` (`shelve`): the patient sends that file, `text` as its caption."""
    meta_secret = os.environ.get("META_APP_SECRET") or webhooks.DEFAULT_SECRET
    attachments = None
    if media is not None:
        kind = _kind(media["mime_type"])
        attachments = [webhooks.meta_attachment("file" if kind == "document" else kind,
                                                media["url"])]
    if channel is ChannelName.whatsapp:
        phone_number_id = (account or os.environ.get("WHATSAPP_PHONE_NUMBER_ID")
                           or webhooks.DEFAULT_PHONE_NUMBER_ID)
        message = webhooks.wa_text(user, text) if media is None else webhooks.wa_media(
            user, _kind(media["mime_type"]), media["id"], media["mime_type"],
            caption=text or None, filename=media["filename"])
        payload = webhooks.whatsapp_payload([message], name=name,
                                            phone_number_id=phone_number_id)
        return webhooks.sign_meta(payload, meta_secret), "whatsapp", user
    if channel is ChannelName.instagram:
        payload = webhooks.instagram_payload(text or None, sender_id=user,
                                             ig_id=account or webhooks.DEFAULT_IG_ID,
                                             attachments=attachments)
        return webhooks.sign_meta(payload, meta_secret), "graph", user
    if channel is ChannelName.tiktok:
        secret = os.environ.get("TIKTOK_CLIENT_SECRET") or webhooks.DEFAULT_SECRET
        payload = webhooks.tiktok_payload(
            text, user_id=user, username=name,
            business_id=account or webhooks.DEFAULT_TIKTOK_BUSINESS_ID)
        return (webhooks.sign_tiktok(payload, secret), "tiktok",
                webhooks.tiktok_conversation_id(user))
    payload = webhooks.messenger_payload(text or None, sender_id=user,
                                         page_id=account or webhooks.DEFAULT_PAGE_ID,
                                         attachments=attachments)
    return webhooks.sign_meta(payload, meta_secret), "graph", user


def _replies(sandbox: str, target: str, recipient: str, since: float) -> list[dict[str, Any]]:
    r = httpx.get(f"{sandbox.rstrip('/')}/_sandbox/requests",
                  params={"target": target, "recipient": recipient, "since": since}, timeout=5)
    r.raise_for_status()
    return [q for q in r.json()["requests"] if q["time"] >= since and 200 <= q["status"] < 300]


@app.command()
def play(
    text: Annotated[str, typer.Argument(help="What the patient writes (a file's caption).")] = "",
    channel: Annotated[ChannelName, typer.Option(help="Platform the patient writes on.")] = (
        ChannelName.whatsapp),
    tenant: Annotated[str, typer.Option(help="Tenant slug in the webhook URL.")] = "esva-dental",
    ingress: Annotated[str, typer.Option(help="Base URL of the ingress.")] = (
        "http://127.0.0.1:8000"),
    from_: Annotated[str, typer.Option("--from", help="Patient id: phone (WhatsApp), PSID, "
                                                     "IGSID or TikTok user id.")] = (
        "5215512345678"),
    name: Annotated[str, typer.Option(help="Patient's display name.")] = "María García",
    account: Annotated[str | None, typer.Option(
        help="Platform account id (phone_number_id, Page id, IG id, TikTok business id).")
    ] = None,
    sandbox: Annotated[str, typer.Option(help="Base URL of the sandbox.")] = (
        "http://127.0.0.1:9100"),
    wait: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 10.0,
    file: Annotated[str | None, typer.Option(
        help="Send a file: foto-muela.png, referencia.pdf, nota-de-voz.ogg or a path.")] = None,
    settle: Annotated[float, typer.Option(
        help="After a reply, seconds to wait for the next (an offer or a confirmation).")] = 2.0,
) -> None:
    """Sign and post a patient's message as the platform would, then show the reply."""
    if file is not None and channel is ChannelName.tiktok:
        typer.echo("files from TikTok patients are not played (text only)", err=True)
        raise typer.Exit(2)
    media = shelve(sandbox, file) if file is not None else None
    webhook, target, recipient = build_webhook(channel, text, from_, name, account, media)
    path_channel = "facebook" if channel is ChannelName.messenger else channel.value
    url = f"{ingress.rstrip('/')}/api/webhook/{path_channel}/{tenant}"
    since = time.time()
    try:
        answer = httpx.post(url, content=webhook.body, headers=webhook.headers, timeout=15)
    except httpx.HTTPError as exc:
        typer.echo(f"POST {url} failed: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"POST {url} -> {answer.status_code} {answer.text[:500]}")
    if answer.status_code >= 300:
        raise typer.Exit(1)
    deadline = time.monotonic() + wait
    seen: set[str | None] = set()
    quiet_until = deadline
    while True:
        try:
            replies = _replies(sandbox, target, recipient, since)
        except httpx.HTTPError as exc:
            typer.echo(f"sandbox at {sandbox} not reachable: {exc}", err=True)
            raise typer.Exit(3) from exc
        for reply in replies:
            if reply["answered_id"] not in seen:
                seen.add(reply["answered_id"])
                shown = reply["text"] or json.dumps(reply["json"], ensure_ascii=False)
                typer.echo(f"reply on {target} to {recipient}: {shown}")
                # More may follow (the scheduler's offer or confirmation after the AI's reply).
                quiet_until = min(deadline, time.monotonic() + settle)
        if time.monotonic() >= quiet_until:
            break
        time.sleep(0.2)
    if not seen:
        typer.echo(f"no reply reached the sandbox for {recipient} within {wait:g}s (none yet)")


@app.command()
def requests(
    target: Annotated[str | None, typer.Option(help="whatsapp, graph, tiktok or anthropic")] = (
        None),
    sandbox: Annotated[str, typer.Option(help="Base URL of the sandbox.")] = (
        "http://127.0.0.1:9100"),
) -> None:
    """Print what the sandbox received, oldest first."""
    params = {"target": target} if target else {}
    r = httpx.get(f"{sandbox.rstrip('/')}/_sandbox/requests", params=params, timeout=5)
    r.raise_for_status()
    for q in r.json()["requests"]:
        typer.echo(f"{q['target']:9} {q['status']} {q['path']} -> {q['recipient']}: "
                   f"{q['text'] or q['error_code']}")


if __name__ == "__main__":
    app()
