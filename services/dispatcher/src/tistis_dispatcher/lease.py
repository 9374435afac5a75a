"""This process's lease (`tistis_common.lease`): a claim records its key in `messages.claimed_by`,
so `repository.claimer_gone` tells a dead claimer from a busy one without any timeout."""

from __future__ import annotations

from tistis_common.lease import ProcessLease

LOCK_CLASS = 7_420_300  # first key of the two-key advisory locks: "dispatcher claims"


def process_lease(url: str) -> ProcessLease:
    return ProcessLease(LOCK_CLASS, url=url, application_name="dispatcher")
