"""`botrunner test`: conversation tests for bots, written in YAML beside them (`*.tests.yaml`).

`loader` reads a test file like a bot file (schema, did-you-mean, file:line:col) into the
frozen types of `testfile`; `runner` plays each test through the real engine with canned tool
responses (`tools`) and a model side that replays, records or goes live (the `replay` and
`record` providers, cassettes in `cassette`); `assertions` and `judge` check each turn, and
`text`, `jsonreport` and `junit` report the `results`.
"""
