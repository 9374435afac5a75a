"""What the WhatsApp Cloud API and the Messenger/Instagram Send API share: Graph's error
envelope, its access-token rules and its trace ids.

Error shape (Graph API / Cloud API):
  {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
             "code": 131047, "error_subcode"?: 2018278,
             "error_data": {"messaging_product": "whatsapp", "details": "..."},
             "fbtrace_id": "A..."}}
"""

from __future__ import annotations

import random
import string
from typing import TYPE_CHECKING, Any

from tistis_sandbox.wire import Answer, Call, expired_token

if TYPE_CHECKING:  # recorder imports callbacks, which import this module
    from tistis_sandbox.recorder import Step

# code -> (HTTP status, title). Titles are what Meta puts into `message`; the dispatcher should
# classify on `code`, as Meta recommends, so the exact wording matters little.
GRAPH_CODES: dict[int, tuple[int, str]] = {
    1: (400, "An unknown error occurred"),
    2: (503, "Service temporarily unavailable"),
    4: (429, "Application request limit reached"),
    10: (403, "Permission denied"),
    100: (400, "Invalid parameter"),
    190: (401, "Invalid OAuth access token"),
    368: (403, "Temporarily blocked for policies violations"),
    551: (400, "This person isn't available right now."),
    613: (429, "Calls to this api have exceeded the rate limit."),
    1200: (500, "Temporary send message failure. Please try again later"),
    130429: (429, "Rate limit hit"),
    131000: (500, "Something went wrong"),
    131005: (403, "Access denied"),
    131008: (400, "Required parameter is missing"),
    131009: (400, "Parameter value is not valid"),
    131021: (400, "Recipient cannot be sender"),
    131026: (400, "Message Undeliverable"),
    131047: (400, "Re-engagement message"),
    131048: (400, "Spam rate limit hit"),
    131049: (400, "This message was not delivered to maintain healthy ecosystem engagement."),
    131050: (400, "User has stopped marketing messages"),
    131051: (400, "Unsupported message type"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (404, "Template name does not exist in the translation"),
    132005: (400, "Translated text too long"),
    132012: (400, "Parameter format does not match format in the created template"),
    133010: (400, "Phone number Not Registered"),
}

DETAILS: dict[int, str] = {
    130429: "Cloud API message throughput has been reached.",
    131026: "Message Undeliverable.",
    131047: (
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number."
    ),
    131050: "Unable to deliver the marketing message because the user has stopped them.",
    131056: "Too many messages sent from the sender phone number to the same recipient "
    "phone number in a short period of time.",
    190: "Error validating access token: Session has expired.",
}


# Fake ids need to be unique, not unguessable: a private Random (seeded from the OS, untouched
# by tests that seed the global one) is some 20 times cheaper per character than `secrets`.
_rng = random.Random()
_ALNUM = string.ascii_letters + string.digits


def fbtrace_id() -> str:
    return "A" + random_token(22, _ALNUM + "_-")


def random_token(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_rng.choices(alphabet, k=n))


def graph_error(
    code: int,
    *,
    details: str | None = None,
    subcode: int | None = None,
    status: int | None = None,
    message: str | None = None,
    whatsapp: bool = False,
    headers: dict[str, str] | None = None,
) -> Answer:
    default_status, title = GRAPH_CODES.get(code, (400, "An unknown error occurred"))
    err: dict[str, Any] = {
        "message": message or f"(#{code}) {title}",
        "type": "OAuthException",
        "code": code,
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    detail = details or DETAILS.get(code)
    if whatsapp:
        err["error_data"] = {"messaging_product": "whatsapp", "details": detail or title}
    elif detail:
        err["error_data"] = {"details": detail}
    err["fbtrace_id"] = fbtrace_id()
    return Answer(status or default_status, {"error": err}, headers)


def scripted_graph_error(step: Step, *, whatsapp: bool) -> Answer:
    """Turn a scripted step into the error Graph would send for it.

    `{"status": 500}` alone becomes a generic failure with the code fitting that status.
    """
    code = step.error_code
    if code is None:
        code = {429: 130429 if whatsapp else 613, 401: 190, 503: 2}.get(
            step.status or 500, 131000 if whatsapp else 1200
        )
        if step.status is not None and step.status < 500 and step.status not in (401, 429):
            code = 100
    return graph_error(
        code,
        subcode=step.error_subcode,
        status=step.status,
        message=step.message,
        whatsapp=whatsapp,
        headers=step.headers or None,
    )


def bearer_or_query_token(call: Call) -> str | None:
    auth = call.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if auth:
        return None
    return call.query.get("access_token") or None


def token_error(token: str | None, *, whatsapp: bool) -> Answer | None:
    """Any non-empty token is valid, except ones that say they are not.

    A token starting with "expired" or "invalid" answers 190 so that tests can exercise the
    unhealthy-connection path without a script.
    """
    if not token:
        return graph_error(
            190,
            message="Invalid OAuth access token - Cannot parse access token",
            details="Invalid OAuth access token - Cannot parse access token",
            whatsapp=whatsapp,
        )
    if token.startswith("expired") or expired_token(token):
        return graph_error(190, subcode=463, whatsapp=whatsapp,
                           message="Error validating access token: Session has expired.")
    if token.startswith("invalid"):
        return graph_error(190, whatsapp=whatsapp,
                           message="Invalid OAuth access token - Cannot parse access token")
    return None
