"""`botrunner test` as users and CI run it: record against the fake upstream, replay offline,
stale after an edit, re-record, the three output formats and the exit codes.

The end-to-end paths run the real CLI in a subprocess; the rest run the same click command in
this process (much faster), with the environment set as a user would."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from bottest_kit import (
    KEY,
    SHOP_RULES,
    SHOP_TESTS,
    botrunner_test,
    cassette,
    go_offline,
    go_online,
    offline_env,
    run_test_command,
    scripted,
    write_shop,
)


@pytest.fixture
def upstream():
    server = scripted(SHOP_RULES)
    yield server
    server.stop()


@pytest.fixture
def recorded(tmp_path, upstream, monkeypatch):
    """The shop bot's tests, recorded against the fake upstream; then the key and the network
    are gone (`go_online` again to record)."""
    path = write_shop(tmp_path / "bots")
    go_online(monkeypatch, upstream.url, SHOP_TOKEN="tok-secret-4242")
    result = run_test_command(str(path), "--record")
    assert result.returncode == 0, result.stdout + result.stderr
    go_offline(monkeypatch)
    return path


def test_record_writes_a_cassette_without_secrets_and_reports_every_test(recorded, upstream):
    data = cassette(recorded)
    assert list(data["tests"]) == ["greets the customer", "checks the stock"]
    stock = data["tests"]["checks the stock"]
    assert stock["now"] == "2025-06-02T09:30:00+00:00"
    # Two model requests for the tool turn (the call, then the answer), one for "Thanks!".
    assert len(stock["exchanges"]) == 3
    first = stock["exchanges"][0]["request"]
    assert first["model"] == "claude-test-1"
    assert first["system"].startswith("You are the shop assistant of Acme. Today is 2025-06-02.")
    assert first["messages"][-1]["content"][0]["text"] == "How many red mugs do you have?"
    assert [t["name"] for t in first["tools"]] == ["stock"]
    assert stock["exchanges"][0]["reply"]["stop_reason"] == "tool_use"
    greet = data["tests"]["greets the customer"]["exchanges"]
    assert greet[-1]["reply"]["content"][0]["text"].startswith("PASS")  # the judge's grade
    raw = recorded.with_name("shop.tests.cassette.json").read_text(encoding="utf-8")
    assert KEY not in raw and "tok-secret-4242" not in raw
    assert len(upstream.requests) == 5


def test_replay_needs_no_key_and_no_network(recorded, upstream):
    before = len(upstream.requests)
    upstream.stop()
    result = botrunner_test(str(recorded), env=offline_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed        " in result.stdout and "checks the stock" in result.stdout
    assert re.search(r"\n\n2 tests: 2 passed \(\d+\.\d s\)\n$", result.stdout)
    assert len(upstream.requests) == before


def test_an_edited_system_prompt_is_stale_with_a_diff_until_recorded_again(
    recorded, upstream, monkeypatch
):
    bot = recorded.with_name("shop.yaml")
    bot.write_text(
        bot.read_text().replace("the shop assistant of", "the cheerful assistant of"), "utf-8"
    )
    stale = botrunner_test(str(recorded), env=offline_env())
    assert stale.returncode == 1
    out = stale.stdout
    assert out.count("STALE") == 2 and "passed " not in out
    assert 'turn 1 ("Hello there"): the request to the model differs from the recording' in out
    assert "rerun with --record" in out
    assert "system:" in out
    assert "- You are the shop assistant of Acme. Today is 2025-06-02." in out
    assert "+ You are the cheerful assistant of Acme. Today is 2025-06-02." in out
    assert "2 tests: 2 stale" in out

    go_online(monkeypatch, upstream.url)
    again = run_test_command(str(recorded), "--record")
    assert again.returncode == 0, again.stdout + again.stderr
    replay = botrunner_test(str(recorded), env=offline_env())
    assert replay.returncode == 0, replay.stdout
    assert "2 tests: 2 passed" in replay.stdout


def test_a_new_message_in_a_test_is_stale(recorded):
    write_shop(
        recorded.parent,
        tests=SHOP_TESTS.replace("      - user: Thanks!", "      - user: Thanks a lot!"),
    )
    result = run_test_command(str(recorded))
    assert result.returncode == 1
    assert 'turn 2 ("Thanks a lot!")' in result.stdout
    assert "messages[4] (user):" in result.stdout
    assert "- user: Thanks!" in result.stdout and "+ user: Thanks a lot!" in result.stdout


def test_a_request_the_recording_lacks_or_has_left_over_is_stale(recorded):
    more = SHOP_TESTS + "      - user: Thanks!\n"
    write_shop(recorded.parent, tests=more)
    result = run_test_command(str(recorded), "-k", "stock")
    assert "botrunner now makes a model request the recording does not have" in result.stdout
    assert result.returncode == 1
    fewer = SHOP_TESTS.replace("      - user: Thanks!\n        expect: {no_tool_calls: true}\n", "")
    write_shop(recorded.parent, tests=fewer)
    result = run_test_command(str(recorded), "-k", "stock")
    assert "the recording has 1 more model request than botrunner makes now" in result.stdout
    assert result.returncode == 1


def test_json_output(recorded):
    bot = recorded.with_name("shop.yaml")
    bot.write_text(bot.read_text().replace("max_tokens: 300", "max_tokens: 301"), "utf-8")
    result = run_test_command(str(recorded), "-k", "greets", "--format", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    (test,) = data["tests"]
    assert test["name"] == "greets the customer" and test["status"] == "stale"
    (failure,) = test["failures"]
    assert failure["assertion"] == "stale" and failure["turn"] == 1
    assert failure["detail"] == "max_tokens: 300 -> 301"
    assert data["summary"] == {**data["summary"], "stale": 1, "passed": 0, "total": 1}
    assert "1 test: 1 stale" in result.stderr


def test_junit_output_and_not_recorded_tests(recorded, tmp_path):
    write_shop(
        recorded.parent,
        tests=SHOP_TESTS.replace("contains: [Acme]", "contains: [Initech]")
        + "  - name: brand new\n    turns:\n      - user: Hello there\n",
    )
    report = tmp_path / "reports" / "junit.xml"
    result = run_test_command(str(recorded), "--junit", str(report))
    assert result.returncode == 1  # the failed assertion; "not recorded" alone would pass
    assert "not recorded  " in result.stdout and "brand new" in result.stdout
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    failure = cases["greets the customer"].find("failure")
    assert failure.get("type") == "contains"
    assert failure.get("message") == 'turn 1: the reply does not contain "Initech"'
    assert "expected: Initech" in failure.text and "got:      Hello from Acme!" in failure.text
    assert cases["brand new"].find("skipped") is not None
    assert list(cases["checks the stock"]) == []
    assert cases["checks the stock"].get("classname").endswith("bots.shop")

    strict = run_test_command(str(recorded), "-k", "brand", "--strict", "--junit", str(report))
    assert strict.returncode == 1
    (case,) = ET.parse(report).getroot().iter("testcase")
    assert case.find("failure").get("type") == "not_recorded"
    lenient = run_test_command(str(recorded), "-k", "brand")
    assert lenient.returncode == 0


def test_k_selects_tests_by_name(recorded):
    result = run_test_command(str(recorded), "-k", "STOCK", "--format", "json")
    assert result.returncode == 0
    assert [t["name"] for t in json.loads(result.stdout)["tests"]] == ["checks the stock"]
    two = run_test_command(str(recorded), "-k", "stock", "-k", "greets", "-j", "1")
    assert "2 tests: 2 passed" in two.stdout
    none = run_test_command(str(recorded), "-k", "nothing like it")
    assert none.returncode == 2
    assert "no test matches -k nothing like it" in none.stderr


def test_directories_and_bot_files_find_their_tests(recorded):
    folder = run_test_command(str(recorded.parent))
    assert folder.returncode == 0 and "2 tests: 2 passed" in folder.stdout
    bot = run_test_command(str(recorded.with_name("shop.yaml")))
    assert bot.returncode == 0 and "2 tests: 2 passed" in bot.stdout


def test_usage_errors_exit_2(tmp_path, recorded):
    missing = run_test_command(str(tmp_path / "nope.tests.yaml"))
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr

    (tmp_path / "lonely.yaml").write_text(
        recorded.with_name("shop.yaml").read_text().replace("name: shop", "name: lonely"), "utf-8"
    )
    untested = run_test_command(str(tmp_path / "lonely.yaml"))
    assert untested.returncode == 2
    assert "has no tests: write them in" in untested.stderr

    write_shop(recorded.parent, tests=SHOP_TESTS.replace("    turns:\n", "    turn:\n", 1))
    invalid = run_test_command(str(recorded))
    assert invalid.returncode == 2
    assert f'{recorded}:6:5: error: unknown key "turn" in tests[0]' in invalid.stderr
    assert 'hint: Did you mean "turns"?' in invalid.stderr
    assert "1 test file with errors" in invalid.stderr
    assert invalid.stdout == ""


def test_running_live_without_a_key_is_a_usage_error(recorded):
    for flag in ("--live", "--record"):
        result = run_test_command(str(recorded), flag)
        assert result.returncode == 2
        assert "No API key: set ANTHROPIC_API_KEY" in result.stderr


def test_live_runs_against_the_model_and_writes_nothing(recorded, upstream, monkeypatch):
    before = recorded.with_name("shop.tests.cassette.json").read_bytes()
    go_online(monkeypatch, upstream.url)
    result = run_test_command(str(recorded), "--live", "-j", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 tests: 2 passed" in result.stdout
    assert recorded.with_name("shop.tests.cassette.json").read_bytes() == before


def test_recording_one_test_keeps_the_others(recorded, upstream, monkeypatch):
    before = cassette(recorded)["tests"]["checks the stock"]
    go_online(monkeypatch, upstream.url)
    result = run_test_command(str(recorded), "--record", "-k", "greets")
    assert result.returncode == 0
    assert "(1 of 2 tests)" in result.stderr
    assert cassette(recorded)["tests"]["checks the stock"] == before


def test_a_broken_cassette_is_a_usage_error_and_a_broken_reply_fails_only_its_test(recorded):
    path = recorded.with_name("shop.tests.cassette.json")
    original = json.loads(path.read_text())
    data = json.loads(path.read_text())
    data["tests"]["greets the customer"]["exchanges"][0] = {"request": {}}
    path.write_text(json.dumps(data))
    broken = run_test_command(str(recorded))
    assert broken.returncode == 2
    assert f"{path}:1:1: error: exchange 1 of the test " in broken.stderr
    assert f"hint: Record it again: botrunner test {recorded} --record" in broken.stderr

    path.write_text("<<<<<<< HEAD\n")
    conflict = run_test_command(str(recorded))
    assert conflict.returncode == 2
    assert f"{path}:1:1: error: the cassette is not valid JSON: Expecting value" in conflict.stderr

    original["tests"]["greets the customer"]["exchanges"][0]["reply"]["content"] = ["oops"]
    path.write_text(json.dumps(original))
    result = run_test_command(str(recorded), "--format", "json")
    assert result.returncode == 1
    greet, stock = json.loads(result.stdout)["tests"]
    assert stock["status"] == "passed"
    assert greet["status"] == "failed"
    assert greet["failures"][0]["message"].startswith("botrunner could not run this test: ")
