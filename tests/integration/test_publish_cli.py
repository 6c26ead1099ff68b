"""`registry publish` and `registry consent` as a lender runs them, against the real broker:
every bad line is named with its reason, and the topic holds exactly the good events."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import random
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.codec import CONSENT_RECORD, LOAN_EVENT, codec_for
from schemas.national_id import check_character, generate
from schemas.records import format_timestamp
from streams.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LENDER = "jd-baitiao"


def cli(settings: Settings, *args: str, stdin: str | bytes | None = None
        ) -> subprocess.CompletedProcess:
    """Run ``registry ARGS``; stdout/stderr as text (stdin may be raw bytes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env |= {
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "KAFKA_NAMESPACE": settings.kafka_namespace,
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        cwd=REPO,
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        timeout=120,
    )
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    return done


async def read_topic(settings: Settings, topic: str, timeout: float = 30.0) -> list:
    """Every record of ``topic`` from the beginning up to its end offsets at call time."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described["error_code"] == 0, described
    tps = [TopicPartition(topic, part["partition"]) for part in described["partitions"]]
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = []
        deadline = time.monotonic() + timeout
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "topic not read to its end in time"
            batches = await consumer.getmany(*tps, timeout_ms=500)
            records += [r for batch in batches.values() for r in batch]
        return records
    finally:
        await consumer.stop()


def loan_line(rng: random.Random, event_id: str, **overrides: object) -> str:
    obj = {
        "event_id": event_id,
        "borrower_id": generate(rng),
        "loan_id": "bt-0001",
        "event_type": "draw",
        "amount": "1250.00",
        "occurred_at": "2026-11-01T09:30:00+08:00",
        "product": "baitiao",
    } | overrides
    return json.dumps({k: v for k, v in obj.items() if v is not None})


async def test_publish_reports_each_bad_line_and_publishes_exactly_the_good(
    settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(7)
    good_ids = [f"evt-{n}" for n in range(6)]
    first17 = generate(rng)[:17]
    wrong_check = first17 + ("0" if check_character(first17) != "0" else "1")
    future = format_timestamp(int(time.time() * 1000) + 86_400_000)
    lines = {
        1: loan_line(rng, good_ids[0]),
        2: '{"event_id": "broken", ',
        3: loan_line(rng, good_ids[1], lender_id=LENDER, event_type="repayment"),
        4: loan_line(rng, "bad-check", borrower_id=wrong_check),
        5: loan_line(rng, good_ids[2], amount="0.01", currency="CNY"),
        6: loan_line(rng, "zero", amount="0"),
        7: "",
        8: loan_line(rng, "other", lender_id="ant-huabei"),
        9: loan_line(rng, None),
        10: loan_line(rng, "future", occurred_at=future),
        11: loan_line(rng, good_ids[3], event_type="default"),
        12: "[1, 2, 3]",
        13: loan_line(rng, good_ids[4]),
        14: loan_line(rng, good_ids[5], product=None),
    }
    bad = {
        2: "MALFORMED",
        4: "INVALID_BORROWER_ID",
        6: "INVALID_AMOUNT",
        8: "LENDER_MISMATCH",
        9: "MISSING_FIELD",
        10: "FUTURE_TIMESTAMP",
        12: "MALFORMED",
    }
    path = tmp_path / "loans.jsonl"
    path.write_text("".join(lines[n] + "\n" for n in sorted(lines)))

    done = cli(settings, "publish", "--lender", LENDER, str(path))

    assert done.returncode == 65, done.stderr  # EX_DATAERR: bad lines, good ones published
    reported = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert len(reported) == len(bad), done.stderr
    for number, reason in bad.items():
        assert any(line.startswith(f"line {number}: {reason}: ") for line in reported), (
            number,
            done.stderr,
        )
    assert "published 6, rejected 7" in done.stdout

    records = await read_topic(settings, settings.topics.loans(LENDER))
    codec = codec_for(LOAN_EVENT)
    decoded = [codec.decode(r.value) for r in records]
    assert sorted(d["event_id"] for d in decoded) == sorted(good_ids)  # exactly, once each
    for record, event in zip(records, decoded, strict=True):
        assert record.key == event["borrower_id"].encode()  # keyed by the raw borrower id
        assert event["lender_id"] == LENDER
        assert record.timestamp_type == 1  # LogAppendTime: the broker stamps arrival


async def test_publish_from_stdin_with_only_good_lines_exits_zero(settings: Settings) -> None:
    rng = random.Random(8)
    text = "\n".join(loan_line(rng, f"stdin-{n}") for n in range(3)) + "\n"
    done = cli(settings, "publish", "--lender", LENDER, "-", stdin=text)
    assert done.returncode == 0, done.stderr
    assert "published 3, rejected 0" in done.stdout
    records = await read_topic(settings, settings.topics.loans(LENDER))
    assert len(records) == 3


async def test_consent_grant_is_published(settings: Settings) -> None:
    borrower = generate(random.Random(9))
    done = cli(
        settings,
        "consent",
        "grant",
        "--lender",
        LENDER,
        "--borrower",
        borrower,
        "--at",
        "2026-10-01T00:00:00+08:00",
        "--reference",
        "contract-17",
    )
    assert done.returncode == 0, done.stderr
    assert borrower not in done.stdout  # the national id is masked in output
    records = await read_topic(settings, settings.topics.consent(LENDER))
    assert len(records) == 1
    rec = codec_for(CONSENT_RECORD).decode(records[0].value)
    assert rec == {
        "lender_id": LENDER,
        "borrower_id": borrower,
        "action": "grant",
        "effective_at_ms": int(datetime.fromisoformat("2026-10-01T00:00:00+08:00").timestamp())
        * 1000,
        "reference": "contract-17",
    }


def test_usage_input_and_outage_errors_have_distinct_codes(settings: Settings,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    done = cli(settings, "publish", "--lender", "Not A Lender", str(path))
    assert done.returncode == 64 and "lender id" in done.stderr  # EX_USAGE
    done = cli(settings, "publish", "--lender", LENDER, str(tmp_path / "missing.jsonl"))
    assert done.returncode == 66 and "cannot read" in done.stderr  # EX_NOINPUT
    done = cli(settings, "consent", "grant", "--lender", LENDER, "--borrower", "123")
    assert done.returncode == 65 and "INVALID_BORROWER_ID" in done.stderr  # EX_DATAERR
    unreachable = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    done = cli(unreachable, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 69 and "no Kafka broker reachable" in done.stderr  # EX_UNAVAILABLE


# --- issue 13: ordinary files that used to crash publish or lose data ------------------------


async def loan_ids(settings: Settings) -> list[str]:
    codec = codec_for(LOAN_EVENT)
    records = await read_topic(settings, settings.topics.loans(LENDER))
    return sorted(codec.decode(r.value)["event_id"] for r in records)


def reported(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("line ")]


async def test_a_utf8_byte_order_mark_is_not_data(settings: Settings, tmp_path: Path) -> None:
    rng = random.Random(21)
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(
        loan_line(rng, f"bom-{n}") + "\r\n" for n in range(3)).encode())
    done = cli(settings, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 0, done.stderr
    assert "published 3, rejected 0" in done.stdout
    assert await loan_ids(settings) == ["bom-0", "bom-1", "bom-2"]


async def test_deep_nesting_is_reported_with_its_line_and_the_rest_published(
    settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(22)
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join([loan_line(rng, "deep-1"), "[" * 5000 + "]" * 5000,
                                loan_line(rng, "deep-3")]) + "\n")
    done = cli(settings, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 65, done.stderr
    assert "Traceback" not in done.stderr
    assert reported(done) == ["line 2: MALFORMED: not valid JSON (nested too deeply)"]
    assert "published 2, rejected 1" in done.stdout
    assert await loan_ids(settings) == ["deep-1", "deep-3"]


async def test_a_lone_surrogate_is_reported_not_a_traceback(settings: Settings,
                                                            tmp_path: Path) -> None:
    rng = random.Random(23)
    bad = loan_line(rng, "sur-2").replace('"baitiao"', '"\\ud800"')
    assert '"\\ud800"' in bad
    path = tmp_path / "surrogate.jsonl"
    path.write_text("\n".join([loan_line(rng, "sur-1"), bad, loan_line(rng, "sur-3")]) + "\n")
    done = cli(settings, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 65, done.stderr
    assert reported(done) == [
        "line 2: MALFORMED: product holds a lone surrogate: not valid Unicode text"]
    assert "published 2, rejected 1" in done.stdout
    assert await loan_ids(settings) == ["sur-1", "sur-3"]


def gbk_events(rng: random.Random) -> bytes:
    """Two events whose ids differ only in two Chinese characters, GBK-encoded."""
    lines = [json.dumps(json.loads(loan_line(rng, event_id)), ensure_ascii=False)
             for event_id in ("借款-甲", "借款-乙")]
    data = "\n".join(lines).encode("gbk") + b"\n"
    assert "借款-甲".encode("gbk") in data and "借款-乙".encode("gbk") in data
    return data


async def test_a_gbk_file_is_reported_per_line_never_silently_replaced(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "gbk.jsonl"
    path.write_bytes(gbk_events(random.Random(24)))
    done = cli(settings, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 65, done.stderr
    lines = reported(done)
    assert [line.split(" (")[0] for line in lines] == [
        "line 1: MALFORMED: not UTF-8", "line 2: MALFORMED: not UTF-8"], done.stderr
    assert "published 0, rejected 2" in done.stdout
    assert await loan_ids(settings) == []
    done = cli(settings, "publish", "--lender", LENDER, "--encoding", "gb18030", str(path))
    assert done.returncode == 0, done.stderr
    assert "published 2, rejected 0" in done.stdout
    assert await loan_ids(settings) == sorted(["借款-甲", "借款-乙"])  # two events, not one


async def test_gbk_on_stdin_is_reported_the_same_way(settings: Settings) -> None:
    data = gbk_events(random.Random(25))
    done = cli(settings, "publish", "--lender", LENDER, "-", stdin=data)
    assert done.returncode == 65, done.stderr
    assert "Traceback" not in done.stderr
    assert [line.split(" (")[0] for line in reported(done)] == [
        "line 1: MALFORMED: not UTF-8", "line 2: MALFORMED: not UTF-8"], done.stderr
    assert "published 0, rejected 2" in done.stdout
    done = cli(settings, "publish", "--lender", LENDER, "--encoding", "gb18030", "-", stdin=data)
    assert done.returncode == 0, done.stderr
    assert "published 2, rejected 0" in done.stdout
    assert await loan_ids(settings) == sorted(["借款-甲", "借款-乙"])


async def test_full_width_digits_are_an_invalid_amount(settings: Settings,
                                                       tmp_path: Path) -> None:
    rng = random.Random(26)
    path = tmp_path / "fullwidth.jsonl"
    path.write_text("\n".join([
        loan_line(rng, "fw-1"),
        json.dumps(json.loads(loan_line(rng, "fw-2")) | {"amount": "１００.００"},
                   ensure_ascii=False),
        loan_line(rng, "fw-3", amount="100.00"),
    ]) + "\n", encoding="utf-8")
    done = cli(settings, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 65, done.stderr
    assert [line.split(": ")[:2] for line in reported(done)] == [["line 2", "INVALID_AMOUNT"]]
    assert "published 2, rejected 1" in done.stdout
    assert await loan_ids(settings) == ["fw-1", "fw-3"]


async def test_whitespace_around_the_national_id_is_one_rule_for_publish_and_consent(
    settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(27)
    borrower = generate(rng)
    padded = f"  {borrower.lower()}\t"
    path = tmp_path / "ws.jsonl"
    path.write_text(loan_line(rng, "ws-1", borrower_id=padded) + "\n")
    done = cli(settings, "publish", "--lender", LENDER, str(path))
    assert done.returncode == 0, done.stderr
    (record,) = await read_topic(settings, settings.topics.loans(LENDER))
    event = codec_for(LOAN_EVENT).decode(record.value)
    assert event["borrower_id"] == borrower.upper() and record.key == borrower.upper().encode()
    done = cli(settings, "consent", "grant", "--lender", LENDER, "--borrower", padded,
               "--at", "2026-10-01T00:00:00+08:00")
    assert done.returncode == 0, done.stderr
    (consent,) = await read_topic(settings, settings.topics.consent(LENDER))
    assert codec_for(CONSENT_RECORD).decode(consent.value)["borrower_id"] == borrower.upper()


# --- issue 17, item 6: progress on a terminal, quiet in a pipe --------------------------------


async def test_publish_draws_progress_on_a_terminal_and_nothing_in_a_pipe(
    settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(28)
    path = tmp_path / "many.jsonl"
    lines = [loan_line(rng, f"many-{n}") for n in range(500)]
    lines[100] = "not json"
    path.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env |= {"KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "KAFKA_NAMESPACE": settings.kafka_namespace, "COLUMNS": "120"}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a real size
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "publish", "--lender",
                             LENDER, str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    terminal = b""
    while True:
        try:
            chunk = await asyncio.to_thread(os.read, master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 65
    assert stdout.decode().strip() == "published 499, rejected 1"  # the summary stays
    drawn = terminal.decode(errors="replace")
    assert "line 101: MALFORMED: not valid JSON" in drawn
    assert "publish:" in drawn and "/500" in drawn and "rec" in drawn  # count of a known total
    assert "rejected 1" in drawn

    done = cli(settings, "publish", "--lender", LENDER, str(path))  # a pipe: no bar
    assert done.returncode == 65
    assert done.stderr.splitlines() == ["line 101: MALFORMED: not valid JSON (Expecting "
                                        "value: line 1 column 1)"]
