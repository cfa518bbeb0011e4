"""Unit tests of the reload/scan sequence (supervisor/reload.py): one scan at a time, requests
that come meanwhile remembered (a reload outranks a code change), waiters answered."""

from __future__ import annotations

from gearmgr.supervisor.reload import Kind, ReloadSequence, ReloadState


def test_idle_starts_at_once_and_a_request_during_a_scan_waits():
    seq: ReloadSequence[str] = ReloadSequence()
    assert seq.request(Kind.RELOAD)
    seq.scanning("scan-1", lambda changed: None)
    assert seq.state is ReloadState.SCANNING
    assert not seq.request(Kind.CODE)
    assert seq.state is ReloadState.RESCAN_PENDING
    scan, _then, pending = seq.finished()
    assert scan == "scan-1" and pending is Kind.CODE and seq.state is ReloadState.IDLE


def test_a_reload_outranks_a_code_change_pending():
    seq: ReloadSequence[str] = ReloadSequence()
    seq.scanning("s", lambda changed: None)
    seq.request(Kind.CODE)
    seq.request(Kind.RELOAD)
    seq.request(Kind.CODE)
    assert seq.finished()[2] is Kind.RELOAD


def test_waiters_hear_the_outcome_once():
    seq: ReloadSequence[str] = ReloadSequence()
    heard: list[dict] = []
    seq.wait(heard.append)
    seq.done({"ok": True})
    seq.done({"ok": False})
    assert heard == [{"ok": True}]


def test_cancel_answers_the_waiters_and_forgets_the_scan():
    seq: ReloadSequence[str] = ReloadSequence()
    heard: list[dict] = []
    seq.wait(heard.append)
    seq.scanning("s", lambda changed: None)
    seq.request(Kind.RELOAD)
    assert seq.cancel() == "s"
    assert seq.state is ReloadState.IDLE and seq.pending is None
    assert heard == [{"ok": False, "applied": False, "error": "the supervisor is stopping"}]
