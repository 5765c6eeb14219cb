"""Transcripts never fail on text (#20): a lone surrogate is escaped, a record that cannot be encoded costs only
itself, a refused write is counted, never raised, and the agent applies a frame whatever its transcript line did."""

from __future__ import annotations

import asyncio
import json

from lib.agents.agent import Agent
from lib.agents.transcript import RawJSON, Transcript, read_transcript
from lib.games.voting.policy import BaselinePolicy

LONE = "\ud800"


def test_a_lone_surrogate_is_written_as_its_json_escape_and_reads_back(tmp_path):
    path = tmp_path / "agent.jsonl"
    with Transcript(path) as transcript:
        transcript.write("recv", msg={"type": "declare", "declaration": [LONE, LONE, 0]})
        transcript.write("model-call", answer=f"x{LONE}y \\{LONE} é")
    assert transcript.failures == 0
    text = path.read_text(encoding="utf-8")  # strict UTF-8: the file holds only valid text
    assert "\\ud800" in text and "é" in text  # escaped, and every other character stays as it is
    records = read_transcript(path)
    assert records[0]["msg"]["declaration"] == [LONE, LONE, 0]
    assert records[1]["answer"] == f"x{LONE}y \\{LONE} é"


def test_a_batch_with_a_lone_surrogate_or_an_unencodable_record_loses_nothing_else_and_raises_nothing(
        tmp_path, capsys):
    path = tmp_path / "agent.jsonl"
    loop_errors: list[dict] = []
    circular: dict = {}
    circular["self"] = circular

    async def scenario() -> Transcript:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
        transcript = Transcript(path, flush_delay=0.01)
        transcript.write("recv", msg={"n": 1})
        transcript.write("model-call", answer=f"a{LONE}")
        transcript.write("meta", note=circular)
        transcript.write("send", msg={"n": 2})
        await asyncio.sleep(0.2)  # the batch is written by its own callback, whenever that runs
        transcript.write("send", msg={"n": 3})
        transcript.close()
        return transcript

    transcript = asyncio.run(scenario())
    assert loop_errors == []  # nothing escaped into the event loop (no "Exception in callback" traceback)
    records = read_transcript(path)
    assert [r["kind"] for r in records] == ["recv", "model-call", "transcript-error", "send", "send"]
    assert records[1]["answer"] == f"a{LONE}"
    assert records[2]["lost_kind"] == "meta" and "Circular reference" in records[2]["error"]
    assert transcript.failures == 1 and "'meta' record could not be encoded" in transcript.last_failure
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_a_write_the_os_refuses_is_counted_not_raised(tmp_path, capsys):
    class FullDisk:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            raise OSError(28, "No space left on device")

        def fileno(self) -> int:
            return -1

        def close(self) -> None:
            pass

    transcript = Transcript(tmp_path / "agent.jsonl")
    transcript._file.close()
    transcript._file = FullDisk()  # type: ignore[assignment]
    transcript.write("recv", msg={"n": 1})
    transcript.write("recv", msg={"n": 2})
    transcript.close()
    assert transcript.failures == 2 and "No space left" in transcript.last_failure
    assert capsys.readouterr().err.count("\n") == 1


class ExplodingTranscript(Transcript):
    """A transcript whose `recv` lines fail (whatever the reason): the frame must still reach the view."""

    def write(self, kind: str, **fields) -> None:
        if kind == "recv":
            raise OSError("the transcript failed")
        super().write(kind, **fields)


def test_the_agent_applies_a_frame_whatever_happens_to_its_transcript_line(tmp_path):
    transcript = ExplodingTranscript(tmp_path / "agent.jsonl")
    agent = Agent("ws://127.0.0.1:1", 7, "recovery-code-0123456789", BaselinePolicy(), transcript)
    frame = {"type": "event", "eventType": "phase-transition", "data": {"round": 1, "phase": 1}}
    agent._on_text(json.dumps(frame))
    transcript.close()
    assert (agent.view.round, agent.view.phase) == (1, 1)
    assert agent.frame_errors == 1 and "the transcript failed" in agent._last_frame_error


def test_a_received_frame_is_written_as_its_own_json_and_reads_back_as_the_parsed_frame(tmp_path):
    path = tmp_path / "agent.jsonl"
    secret = "recovery-code-0123456789"
    texts = ['{"type":"event","eventType":"status","data":{"recovery":"recovery-code-0123456789","é":[1.5,null]}}',
             '{"gameId": 1, "note": "\\ud800 \\u00e9"}', "[1E5, -0]"]

    async def scenario() -> None:
        for batch in (0.0, 0.01):  # line by line, and in a batch
            transcript = Transcript(path, secrets=[secret], flush_delay=batch)
            for text in texts:
                transcript.write("recv", msg=RawJSON(text))
            transcript.close()

    asyncio.run(scenario())
    records = read_transcript(path)
    assert [r["msg"] for r in records] == [json.loads(t.replace(secret, "[redacted]")) for t in texts] * 2
    assert all(list(r) == ["t", "ts_ms", "kind", "msg"] for r in records)
    assert secret not in path.read_text(encoding="utf-8")


def test_the_agent_writes_a_frame_with_a_line_break_re_encoded_on_one_line(tmp_path):
    path = tmp_path / "agent.jsonl"
    with Transcript(path) as transcript:
        agent = Agent("ws://127.0.0.1:1", 1, "code", BaselinePolicy(), transcript)
        agent._on_text('{"type": "info",\n "message": "Player 1 joined."}')
    [record] = read_transcript(path)
    assert record["msg"] == {"type": "info", "message": "Player 1 joined."}
