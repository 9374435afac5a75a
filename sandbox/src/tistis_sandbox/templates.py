"""The fake WhatsApp Business Management API's message templates of a WABA:
`GET /{version}/{waba-id}/message_templates`, in Meta's response shape (`data` with name,
language, status, category, components and id; `paging.cursors` and `next` while more remain).

Source: Meta, "Template management" (Get templates), https://developers.facebook.com/
documentation/business-messaging/whatsapp/templates/template-management/ and the Message
Templates API reference it links. Statuses as Meta lists them: APPROVED, PENDING, REJECTED,
PAUSED, DISABLED. The catalog is the product guide's templates (the dispatcher sends them) plus
an inbox follow-up, and one still in review.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request


def _template(tid: str, name: str, category: str, status: str, body: str) -> dict[str, Any]:
    return {"name": name, "parameter_format": "POSITIONAL", "language": "es_MX",
            "status": status, "category": category, "id": tid,
            "components": [{"type": "BODY", "text": body}]}


CATALOG: list[dict[str, Any]] = [
    _template("900000000000001", "cita_confirmada", "UTILITY", "APPROVED",
              "Hola {{1}}, tu cita quedó confirmada para el {{2}} a las {{3}} en {{4}}."),
    _template("900000000000002", "recordatorio_cita", "UTILITY", "APPROVED",
              "Hola {{1}}, te recordamos tu cita del {{2}} a las {{3}} en {{4}}."),
    _template("900000000000003", "bienvenida_esva", "MARKETING", "APPROVED",
              "¡Hola {{1}}! Bienvenido a ESVA Dental. ¿En qué te podemos ayudar?"),
    _template("900000000000004", "cotizacion_enviada", "UTILITY", "APPROVED",
              "Hola {{1}}, te enviamos la cotización de: {{2}}."),
    _template("900000000000005", "seguimiento", "MARKETING", "APPROVED",
              "Hola {{1}}, ¿pudiste revisar la información? Con gusto te agendamos."),
    _template("900000000000006", "retomar_conversacion", "UTILITY", "APPROVED",
              "Hola {{1}}, te escribimos de la clínica para dar seguimiento a tu mensaje: {{2}}"),
    _template("900000000000007", "promo_blanqueamiento", "MARKETING", "PENDING",
              "Blanqueamiento con 20% de descuento este mes."),
]


def add_template_routes(app: FastAPI) -> None:
    @app.get("/{version}/{waba_id}/message_templates")
    async def message_templates(
        request: Request, version: str, waba_id: str,
        limit: int = Query(25, ge=1, le=1000), after: str | None = None,
    ) -> dict[str, Any]:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            # Graph's answer to a call without a token (OAuthException, code 190 family).
            raise HTTPException(401, {"error": {"message": "An access token is required",
                                                "type": "OAuthException", "code": 104}})
        start = int(base64.b64decode(after).decode()) if after else 0
        page = CATALOG[start:start + limit]
        body: dict[str, Any] = {"data": page, "paging": {"cursors": {
            "before": base64.b64encode(str(start).encode()).decode(),
            "after": base64.b64encode(str(start + len(page)).encode()).decode()}}}
        if start + limit < len(CATALOG):
            body["paging"]["next"] = (f"{str(request.base_url).rstrip('/')}/{version}/{waba_id}"
                                      f"/message_templates?limit={limit}&after="
                                      f"{body['paging']['cursors']['after']}")
        return body
