"""Messenger (`object: page`) and Instagram (`object: instagram`) webhooks.

Items: each event of `entry[].messaging[]` and `entry[].standby[]` (another app owns the thread:
stored, never answered) and each `entry[].changes[]` item, routed by the entry's `id` (the Page
or Instagram account). Events: `message` (text, quick reply, attachments, replies to stories,
echoes, unsends), `message_edit`, `reaction`, `referral` (ad / link origin), `postback`,
`delivery` and `read`. Instagram's dashboard "Test" button sends `changes[]` for an account id
"0": acknowledged and counted as a test. A real `changes[]` `messages` item is read like a
`messaging[]` event.

Attachments: image, audio, video, file, location, `sticker` (new type; until 2026-08-30 also an
image with `sticker_id`), `fallback` (a link; the text is the URL), `share`, `ig_post` (shared
post; the legacy `share` for posts ended in 2026), `ig_reel`/`reel`, `story_mention`.
Shapes: Meta's Messenger Platform webhook reference (developers.facebook.com/docs/messenger-
platform/reference/webhook-events/) and Instagram messaging webhooks
(developers.facebook.com/docs/instagram-platform/webhooks/examples).

Echoes (`message.is_echo`): sent by the Page/account itself. With our app id they are our own
replies (counted, dropped); from any other app or the native inbox they are staff messages
(Instagram echoes carry no `app_id`: the ai-responder recognises our own by id or text).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from tistis_common.events import Channel, InboundMessage, MediaRef, MessageStatus

from .base import (
    Item,
    MalformedPayload,
    Normalized,
    Routing,
    as_dict,
    from_millis,
    inbound_event_id,
    location_fields,
    require,
    status_event_id,
    text_or_none,
    verify_meta_signature,
)

ATTACHMENT_KINDS = {"image": "image", "audio": "audio", "video": "video", "file": "document",
                    "location": "location", "share": "share", "ig_post": "share",
                    "ig_reel": "share", "reel": "share", "story_mention": "share",
                    "sticker": "sticker", "fallback": "link"}
DASHBOARD_TEST_ACCOUNT = "0"


def _referral(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    flat = {k: str(v) for k, v in value.items()
            if isinstance(v, str | int) and not isinstance(v, bool)}
    for key in ("ads_context_data",):  # nested ad details: the title says which ad
        nested = value.get(key)
        if isinstance(nested, dict) and nested.get("ad_title"):
            flat["ad_title"] = str(nested["ad_title"])
    return flat or None


class MetaMessagingAdapter:
    channel: Channel
    object_name: str

    def verify_signature(self, headers: Headers, body: bytes, secret: str) -> bool:
        return verify_meta_signature(headers, body, secret)

    def items(self, payload: object) -> list[Item]:
        if not isinstance(payload, dict) or payload.get("object") != self.object_name:
            raise MalformedPayload(f"object is not {self.object_name}")
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise MalformedPayload("entry is not a list")
        items: list[Item] = []
        for entry in entries:
            account = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(account, str | int) or isinstance(account, bool):
                items.append(Item("", "entry", entry))
                continue
            account = str(account)
            if account == DASHBOARD_TEST_ACCOUNT:  # the dashboard's "Test" button: no account
                items.append(Item("", "ignored", "test_event"))
                continue
            for key in ("messaging", "standby", "changes"):
                events = entry.get(key) or []
                if not isinstance(events, list):
                    items.append(Item(account, key, events))
                    continue
                items.extend(Item(account, key, event) for event in events)
        return items

    def normalize(self, item: Item, routing: Routing, out: Normalized) -> None:
        if item.kind == "changes":
            change = as_dict(item.raw, "change")
            if change.get("field") != "messages":
                out.ignore(change.get("field"))
            else:
                self._event(as_dict(change["value"], "change value"), item.account, routing, out,
                            standby=False)
        elif item.kind in ("messaging", "standby"):
            self._event(as_dict(item.raw, item.kind), item.account, routing, out,
                        standby=item.kind == "standby")
        else:
            raise MalformedPayload(f"unreadable {item.kind}")

    def _event(self, event: dict, account: str, routing: Routing, out: Normalized, *,
               standby: bool) -> None:
        sender, recipient = str(event["sender"]["id"]), str(event["recipient"]["id"])
        message = event.get("message")
        if isinstance(message, dict) and message.get("is_echo"):
            require(sender == account, "echo from another account than the entry's")
            if str(message.get("app_id")) in routing.our_app_ids:
                out.echoes += 1
                return
            self._message(message, event, recipient, account, routing, out, sender_type="agent",
                          standby=standby)
            return
        require(recipient == account, "event for another account than the entry's")
        common = {"standby": standby, "referral": _referral(event.get("referral"))}
        if isinstance(message, dict):
            self._message(message, event, sender, account, routing, out, sender_type="lead",
                          standby=standby)
        elif isinstance(event.get("postback"), dict):
            self._postback(event["postback"], event, sender, account, routing, out, standby)
        elif isinstance(event.get("message_edit"), dict):
            edit = event["message_edit"]
            mid = str(edit["mid"])
            out.events.append(self._inbound(
                routing, f"{mid}#edit{edit.get('num_edit', event['timestamp'])}", sender, account,
                event, kind="edit", text=text_or_none(edit.get("text")), target_id=mid,
                standby=standby))
        elif isinstance(event.get("reaction"), dict):
            reaction = event["reaction"]
            mid = str(reaction["mid"])
            taken_back = reaction.get("action") == "unreact"
            out.events.append(self._inbound(
                routing, f"reaction:{mid}:{sender}:{event['timestamp']}", sender, account, event,
                kind="reaction", target_id=mid, standby=standby,
                text="" if taken_back else (text_or_none(reaction.get("emoji"))
                                            or text_or_none(reaction.get("reaction")) or "")))
        elif common["referral"] is not None:  # opened the thread from an ad, link or QR code
            out.events.append(self._inbound(
                routing, f"referral:{sender}:{event['timestamp']}", sender, account, event,
                kind="referral", **common))
        elif isinstance(event.get("delivery"), dict):
            self._delivery(event["delivery"], event, sender, account, routing, out)
        elif isinstance(event.get("read"), dict):
            self._read(event["read"], event, sender, account, routing, out)
        else:  # optin, handover (pass/take thread control), ...
            kinds = [k for k in event if k not in ("sender", "recipient", "timestamp")]
            out.ignore(kinds[0] if kinds else "empty")

    def _inbound(self, routing: Routing, message_id: str, user: str, account: str, event: dict,
                 **fields: Any) -> InboundMessage:
        return InboundMessage(
            event_id=inbound_event_id(routing.tenant_id, self.channel, message_id),
            tenant_id=routing.tenant_id, channel=self.channel, platform_account_id=account,
            platform_user_id=user, platform_message_id=message_id,
            sent_at=from_millis(event["timestamp"]), **fields,
        )

    def _message(self, message: dict, event: dict, user: str, account: str, routing: Routing,
                 out: Normalized, *, sender_type: str, standby: bool) -> None:
        mid = str(message["mid"])
        common: dict[str, Any] = {"sender_type": sender_type, "standby": standby,
                                  "referral": _referral(message.get("referral")
                                                        or event.get("referral"))}
        if message.get("is_deleted"):  # the patient unsent it: the stored message is marked
            out.events.append(self._inbound(routing, f"{mid}#unsend", user, account, event,
                                            kind="unsend", target_id=mid, **common))
            return
        if message.get("is_unsupported"):
            out.events.append(self._inbound(routing, mid, user, account, event, kind="unsupported",
                                            error="unsupported message type", **common))
            return
        reply_to = message.get("reply_to") or {}
        common["reply_to"] = text_or_none(reply_to.get("mid"))
        story = reply_to.get("story") if isinstance(reply_to, dict) else None
        if isinstance(story, dict):  # a reply to the clinic's story: the story is the context
            common["details"] = {"story_reply": {k: str(v) for k, v in story.items()}}
        text = text_or_none(message.get("text"))
        attachments = message.get("attachments") or []
        quick_reply = message.get("quick_reply")
        if quick_reply:
            out.events.append(self._inbound(
                routing, mid, user, account, event, kind="quick_reply", text=text,
                choice_id=text_or_none(quick_reply.get("payload")), choice_title=text, **common))
            return
        if not attachments:
            require(text is not None, "message without text or attachments")
            out.events.append(self._inbound(routing, mid, user, account, event, kind="text",
                                            text=text, **common))
            return
        # One event per attachment (several photos in one message); the first keeps the mid.
        for i, attachment in enumerate(attachments):
            fields = self._attachment(as_dict(attachment, "attachment"), text if i == 0 else None)
            message_id = mid if i == 0 else f"{mid}#{i}"
            out.events.append(self._inbound(routing, message_id, user, account, event, **fields,
                                            **common))

    def _attachment(self, attachment: dict, text: str | None) -> dict[str, Any]:
        kind = ATTACHMENT_KINDS.get(str(attachment.get("type")), "unsupported")
        payload = attachment.get("payload") or {}
        url = text_or_none(payload.get("url"))
        fields: dict[str, Any] = {"kind": kind, "text": text}
        if kind == "location":
            coords = payload.get("coordinates") or {}
            found = location_fields(coords.get("lat"), coords.get("long"),
                                    text_or_none(attachment.get("title")))
            return {**found, "text": text or found.get("text")}
        if kind == "link":  # Meta sends a link in the text as a `fallback` attachment
            fields["text"] = text or url or text_or_none(attachment.get("title"))
        if kind == "unsupported":  # template, product, ...: staff see what it was
            fields["error"] = f"attachment {attachment.get('type')}"[:100]
        fields["media"] = MediaRef(
            id=text_or_none(payload.get("attachment_id") or payload.get("sticker_id")
                            or payload.get("reel_video_id") or payload.get("ig_post_media_id")
                            or payload.get("id")),
            url=url, caption=text,
            filename=text_or_none(attachment.get("title")) if kind in ("document", "link") else None,
        )
        if payload.get("sticker_id") is not None and kind == "image":
            fields["kind"] = "sticker"
        if kind == "share" and fields["text"] is None:
            fields["text"] = text_or_none(payload.get("title")) or url
        return fields

    def _postback(self, postback: dict, event: dict, user: str, account: str, routing: Routing,
                  out: Normalized, standby: bool) -> None:
        # Postbacks carry a mid on current API versions; older ones get a stable stand-in.
        mid = postback.get("mid") or f"postback:{user}:{event['timestamp']}:{postback.get('payload')}"
        title = text_or_none(postback.get("title"))
        out.events.append(self._inbound(
            routing, str(mid), user, account, event, kind="postback", text=title,
            choice_id=text_or_none(postback.get("payload")), choice_title=title, standby=standby,
            referral=_referral(postback.get("referral"))))

    def _status(self, routing: Routing, account: str, user: str, message_id: str, status: str,
                at_ms: object, *, scope: str = "message") -> MessageStatus:
        at = from_millis(at_ms)
        return MessageStatus(
            event_id=status_event_id(routing.tenant_id, self.channel, message_id, status, at),
            tenant_id=routing.tenant_id, channel=self.channel, platform_account_id=account,
            platform_message_id=message_id, platform_user_id=user, status=status,  # type: ignore[arg-type]
            status_at=at, scope=scope,  # type: ignore[arg-type]
        )

    def _delivery(self, delivery: dict, event: dict, user: str, account: str, routing: Routing,
                  out: Normalized) -> None:
        at = delivery.get("watermark") or event["timestamp"]
        mids = delivery.get("mids") or []
        for mid in mids:
            out.events.append(self._status(routing, account, user, str(mid), "delivered", at))
        if not mids:  # only a watermark: everything sent to this user up to it
            out.events.append(self._status(routing, account, user, user, "delivered", at,
                                           scope="conversation"))

    def _read(self, read: dict, event: dict, user: str, account: str, routing: Routing,
              out: Normalized) -> None:
        if read.get("mid"):  # Instagram names the message read
            out.events.append(self._status(routing, account, user, str(read["mid"]), "read",
                                           event["timestamp"]))
        else:  # Messenger gives a watermark
            out.events.append(self._status(routing, account, user, user, "read",
                                           read.get("watermark") or event["timestamp"],
                                           scope="conversation"))


class FacebookAdapter(MetaMessagingAdapter):
    channel = Channel.FACEBOOK
    object_name = "page"


class InstagramAdapter(MetaMessagingAdapter):
    channel = Channel.INSTAGRAM
    object_name = "instagram"
