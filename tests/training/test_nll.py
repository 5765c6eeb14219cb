"""The NLL of a human's answer from a served model (lib/training/nll.py) and `--evaluate --policies llm --nll`, against
the
fake OpenAI server playing vLLM with a toy model: one token per character, each with a known log-probability."""

from __future__ import annotations

import asyncio
import csv
import json

import openai
import pytest

import finetune
from lib.training import nll
from tests.helpers.evalsets import HAND_SET, write_set
from tests.helpers.fakeopenai import MALFORMED_ANSWERS, FakeOpenAI
from tests.helpers.scripted_answers import scripted


def render(messages: list[dict], generation_prompt: bool) -> str:
    """The toy chat template: <role>content| per message, then <assistant> to open the model's turn."""
    return "".join(f"<{m['role']}>{m['content']}|" for m in messages) + ("<assistant>" if generation_prompt else "")


def logprob(char: str) -> float:
    return -0.5 * (1 + ord(char) % 3)


def expected_nll(answer: str) -> float:
    return -sum(logprob(c) for c in answer + "|")    # the answer's characters and the end of turn


class ToyVLLM:
    """Answers like vLLM's chat completions with prompt_logprobs=0: a list with None first, then one entry per prompt
    token holding that token's log-probability; prompt_token_ids when `ids`, and distractor candidates when `crowd`."""

    def __init__(self, ids: bool = True, crowd: bool = False):
        self.ids, self.crowd, self.asked = ids, crowd, 0

    def __call__(self, body: dict) -> dict | str:
        if "prompt_logprobs" not in body:
            return scripted(body)
        self.asked += 1
        text = render(body["messages"], body.get("add_generation_prompt", True))
        entries = [None] + [{str(ord(c)): {"logprob": logprob(c), "rank": 1, "decoded_token": c}} for c in text[1:]]
        if self.crowd:
            for entry in entries[1:]:
                entry["0"] = {"logprob": -0.01, "rank": 1, "decoded_token": "?"}
        extra = {"prompt_logprobs": entries,
                 "usage": {"prompt_tokens": len(text), "completion_tokens": 1, "total_tokens": len(text) + 1}}
        if self.ids:
            extra["prompt_token_ids"] = [ord(c) for c in text]
        return {"content": "x", "response_extra": extra}


def served(fake: FakeOpenAI, prompt: list[dict], answer: str) -> nll.AnswerNLL:
    async def ask():
        client = openai.AsyncOpenAI(api_key=fake.api_key, base_url=fake.base_url, max_retries=0)
        try:
            return await nll.served_answer_nll(client, "served-model", prompt, answer)
        finally:
            await client.close()
    return asyncio.run(ask())


PROMPT = [{"role": "system", "content": "You are Owner 1."}, {"role": "user", "content": "Vote?"}]
ANSWER = '{"gameId":1,"type":"compensation-decision","compensationDecisions":[1]}'


@pytest.mark.parametrize("ids", [True, False], ids=["prompt_token_ids", "token counts"])
def test_the_answer_tokens_are_scored_and_the_prompt_tokens_not(ids):
    with FakeOpenAI() as fake:
        fake.chat_default = toy = ToyVLLM(ids=ids)
        score = served(fake, PROMPT, ANSWER)
        requests = [c["json"] for c in fake.calls_to("POST", "/chat/completions")]
    assert score.tokens == len(ANSWER) + 1
    assert score.nll == pytest.approx(expected_nll(ANSWER))
    assert toy.asked == 2 and [r["add_generation_prompt"] for r in requests] == [False, True]
    assert requests[0]["messages"][-1] == {"role": "assistant", "content": ANSWER}


def test_top_candidates_without_token_ids_cannot_be_told_apart():
    with FakeOpenAI() as fake:
        fake.chat_default = ToyVLLM(ids=False, crowd=True)
        with pytest.raises(nll.NoPromptLogprobs, match="several candidates"):
            served(fake, PROMPT, ANSWER)


def test_the_right_candidate_is_picked_by_its_token_id():
    with FakeOpenAI() as fake:
        fake.chat_default = ToyVLLM(ids=True, crowd=True)
        assert served(fake, PROMPT, ANSWER).nll == pytest.approx(expected_nll(ANSWER))


@pytest.fixture
def fake(monkeypatch):
    with FakeOpenAI() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("OPENAI_MODEL", raising=False)
        yield server


def test_evaluate_reports_the_served_nll_per_action_type(fake, tmp_path, capsys):
    write_set(tmp_path / "validation_set.jsonl")
    fake.chat_default = ToyVLLM()
    code = finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "llm", "--model", "served",
                          "--nll"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "evaluation_report.json").read_text())
    lines = (tmp_path / "validation_set.jsonl").read_text().splitlines()
    for action in ("compensation-request", "compensation-offer", "compensation-decision"):
        answers = [json.loads(line)["messages"][2]["content"] for line, row in zip(lines, HAND_SET, strict=True)
                   if row[2] == action]
        scores = report["policies"]["llm"][action]
        assert scores["nll"] == pytest.approx(sum(map(expected_nll, answers)) / len(answers))
    assert "prompt log-probabilities" in report["policy_info"]["llm"]["nll"]


REFUSED = {"status": 400, "error": {"message": "Unrecognized request argument supplied: prompt_logprobs"}}


@pytest.mark.parametrize("extension", ["refused", "ignored"])
def test_evaluate_goes_on_without_the_nll_where_the_endpoint_has_none(fake, tmp_path, capsys, extension):
    """OpenAI refuses the extension's arguments; another server may ignore them and answer without the field."""
    write_set(tmp_path / "validation_set.jsonl")
    fake.chat_default = lambda body: (scripted(body) if "prompt_logprobs" not in body
                                      else REFUSED if extension == "refused" else "ignored")
    code = finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "llm", "--model", "gpt-x",
                          "--nll"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "evaluation_report.json").read_text())
    assert all("nll" not in scores for scores in report["policies"]["llm"].values())
    note = report["policy_info"]["llm"]["nll"]
    assert note.startswith("not available")
    if extension == "refused":
        assert "refused" in note and "Unrecognized request argument supplied: prompt_logprobs" in note
    else:
        assert "returned no prompt log-probabilities" in note


def spoiled(extra: dict) -> dict:
    """ToyVLLM's answer with `extra` replacing its fields as they are; "last" replaces the last prompt token's
    entry (an answer token's)."""
    def answer(body: dict) -> dict | str:
        reply = ToyVLLM()(body)
        if isinstance(reply, dict):
            fields = reply["response_extra"]
            if "last" in extra:
                fields["prompt_logprobs"][-1] = extra["last"]
            fields.update({k: v for k, v in extra.items() if k != "last"})
        return reply
    return answer


# vLLM-shaped answers with one part wrong, each with what the note must say
SPOILED = {
    "vLLM answer, usage a string": ({"usage": "lots"}, "usage is not token counts"),
    "logprob a string": ({"last": {"124": {"logprob": "abc"}}}, "is not a number at most 0"),
    "logprob a string entry": ({"last": {"124": "x"}}, "is not a number at most 0"),
    "logprob positive": ({"last": {"124": {"logprob": 2.5}}}, "is not a number at most 0"),
    "logprob of 400 digits": ({"last": {"124": {"logprob": -10 ** 400}}}, "is not a number at most 0"),
}
# what the SDK cannot read at all, in the field this request reads (MALFORMED_ANSWERS holds them in the content)
_HEAD = '{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"prompt_logprobs":'
RAW = {
    "logprobs nested 60,000 deep": _HEAD + "[" * 60_000 + "]" * 60_000 + "}",
    "logprob of 5,000 digits": _HEAD + '[null,{"60":{"logprob":-' + "9" * 5_000 + "}}]}",
}


@pytest.mark.parametrize("name", [*MALFORMED_ANSWERS, *SPOILED, *RAW])
def test_evaluate_says_why_a_malformed_nll_answer_has_no_nll(fake, tmp_path, capsys, name):
    """Issue #20: every answer lib.agents.llm.read_completion refuses, and log-probabilities of the wrong shape, give
    no NLL with the reason, not a traceback."""
    write_set(tmp_path / "validation_set.jsonl")
    if name in MALFORMED_ANSWERS:
        body = MALFORMED_ANSWERS[name]
        fake.chat_default = lambda request: scripted(request) if "prompt_logprobs" not in request else dict(body)
        said = {"not json": "unreadable answer", "choices of strings": "first choice is not a message",
                "usage a string": "usage is not token counts"}.get(name, "returned no prompt log-probabilities")
    elif name in RAW:
        fake.chat_default = lambda request: scripted(request) if "prompt_logprobs" not in request else {
            "body": RAW[name]}
        said = "nests too deeply" if "nested" in name else "is not valid JSON"
    else:
        extra, said = SPOILED[name]
        fake.chat_default = spoiled(extra)
    code = finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "llm", "--model", "served", "--nll"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "evaluation_report.json").read_text())
    assert all("nll" not in scores for scores in report["policies"]["llm"].values())
    note = report["policy_info"]["llm"]["nll"]
    assert note.startswith("not available: ") and len(note.splitlines()) == 1
    assert f"note: llm: no NLL: {note.removeprefix('not available: ')}" in err
    if said:
        assert said in note


def test_token_ids_that_are_not_integers_are_malformed():
    with FakeOpenAI() as fake:
        def answer(body: dict) -> dict | str:
            reply = ToyVLLM()(body)
            if isinstance(reply, dict):  # as many ids as tokens, one of them not an integer
                reply["response_extra"]["prompt_token_ids"][-1] = "124"
            return reply
        fake.chat_default = answer
        with pytest.raises(nll.MalformedAnswer, match="prompt_token_ids that are not all integers"):
            served(fake, PROMPT, ANSWER)


def only_for(target_user: str, answer) -> callable:
    """ToyVLLM's answers, but `answer` for the requests of the example whose user message is `target_user`."""
    toy = ToyVLLM()

    def reply(body: dict) -> dict | str:
        if "prompt_logprobs" in body and body["messages"][1]["content"] == target_user:
            return answer(body)
        return toy(body)
    return reply


@pytest.mark.parametrize(("which", "spoil", "reason"), [
    (0, spoiled({"last": {"124": {"logprob": 2.5}}}), "is not a number at most 0"),
    (3, spoiled({"last": {"124": {"logprob": 2.5}}}), "is not a number at most 0"),
    (3, lambda body: REFUSED, "refused a prompt log-probability request (400: Unrecognized request argument"),
], ids=["the first example malformed", "a later example malformed", "a later example refused"])
def test_an_example_the_endpoint_spoils_has_no_nll_and_the_others_keep_theirs(fake, tmp_path, capsys, which, spoil,
                                                                              reason):
    """The NLL is per example: one spoiled answer (or one refused request, once the endpoint has shown that it gives
    prompt log-probabilities) leaves that example without an NLL, the reason counted and said; before, it switched
    the NLL off for the whole run."""
    write_set(tmp_path / "validation_set.jsonl")
    lines = (tmp_path / "validation_set.jsonl").read_text().splitlines()
    scored = [json.loads(line)["messages"] for line, row in zip(lines, HAND_SET, strict=True)
              if row[2] != "chat-with-players"]
    target = scored[which]
    fake.chat_default = only_for(target[1]["content"], spoil)
    code = finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "llm", "--model", "served", "--nll"])
    err = capsys.readouterr().err
    assert code == 0, err
    report = json.loads((tmp_path / "evaluation_report.json").read_text())
    for action in ("compensation-request", "compensation-offer", "compensation-decision"):
        answers = [m[2]["content"] for m in scored if m is not target and json.loads(m[2]["content"])["type"] == action]
        assert report["policies"]["llm"][action]["nll"] == pytest.approx(sum(map(expected_nll, answers)) / len(answers))
    info = report["policy_info"]["llm"]
    assert info["nll_scored"] == len(scored) - 1 and info["nll_missing"] == 1
    assert info["nll"].startswith("nats per answer") and f"; 1 of {len(scored)} examples without NLL: " in info["nll"]
    [(said, count)] = info["nll_missing_reasons"].items()
    assert reason in said and count == 1
    assert f"note: llm: 1 of {len(scored)} examples without NLL: " in err and reason in err
    assert "no NLL" not in err and "Traceback" not in err
    with (tmp_path / "decisions.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["policy"] == "llm" and r["action"] != "chat-with-players"]
    assert sum(r["nll"] == "" for r in rows) == 1 and rows[which]["nll"] == ""


def test_the_nll_is_the_human_answer_s_given_the_prompt_variant_asked(fake, tmp_path, capsys):
    from lib.games.voting.variants import RULES

    write_set(tmp_path / "validation_set.jsonl")
    fake.chat_default = ToyVLLM()
    code = finetune.main(["--evaluate", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path),
                          "--policies", "llm", "--model", "served", "--nll", "--prompt-variant", "zero-shot"])
    assert code == 0, capsys.readouterr().err
    asked = [c["json"] for c in fake.calls_to("POST", "/chat/completions") if "prompt_logprobs" in c["json"]]
    assert asked and all(body["messages"][0]["content"].endswith(RULES) for body in asked)
