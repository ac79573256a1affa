"""The templating contract the engine and the HTTP tool executor rely on."""

from __future__ import annotations

import jinja2
import pytest

from botrunner.bot import Location, ToolHttp
from botrunner.templating import (
    BodyTemplate,
    RenderedRequest,
    RenderError,
    RenderFailed,
    Template,
    TemplateProblem,
    UrlTemplate,
    environment,
    render_request,
)
from botrunner.templating.httprequest import PathValueRefused

LOC = Location("bot.yaml", 3, 9)


def test_one_sandboxed_environment():
    assert isinstance(environment, jinja2.sandbox.SandboxedEnvironment)
    assert environment.autoescape is False
    assert environment.keep_trailing_newline is True
    assert environment.undefined is jinja2.Undefined


def test_template_attributes_and_lenient_render():
    template = Template("Hi {{ user.name }}!\n", LOC)
    assert template.source == "Hi {{ user.name }}!\n"
    assert template.location == LOC
    assert template.render({"user": {}}) == "Hi !\n"
    assert template.render({"user": {"name": "Ada"}}) == "Hi Ada!\n"


def test_user_data_is_never_compiled():
    template = Template("{{ user.name }} said {{ message }}")
    out = template.render({"user": {"name": "{{ 7*7 }}"}, "message": "{% for %}"})
    assert out == "{{ 7*7 }} said {% for %}"


def test_sandbox_blocks_unsafe_attribute_access():
    with pytest.raises(RenderFailed) as info:
        Template("{{ x.__class__.__mro__ }}").render({"x": 1})
    assert isinstance(info.value.cause, jinja2.exceptions.SecurityError)
    with pytest.raises(RenderFailed) as info:
        Template('{{ "".__class__.__mro__[1].__subclasses__() }}').render({})
    assert isinstance(info.value.cause, jinja2.exceptions.SecurityError)


def test_static_text_skips_jinja():
    template = Template("plain text")
    assert template.is_static
    assert template.render({}) == "plain text"


def test_syntax_error_carries_the_line_and_the_offending_column():
    with pytest.raises(TemplateProblem) as info:
        Template("a\nb\n  {{ x }\n")
    assert (info.value.line, info.value.column) == (3, 7)
    assert info.value.message == "template syntax error: unexpected '}'"


def test_undeclared_names_with_positions():
    template = Template("{{ a }}\n{% for i in items %}{{ i }}{{ b.c }}{% endfor %}")
    assert template.undeclared() == [("a", 1, 3), ("items", 2, 12), ("b", 2, 30)]


def test_env_rewritten_before_compiling_so_secrets_are_not_templates():
    template = Template("Bearer ${TOKEN}", env={"TOKEN": "{{ 7*7 }}{% bad %}"})
    assert template.render({}) == "Bearer {{ 7*7 }}{% bad %}"


def test_env_defaults_follow_the_shell():
    assert Template("${A:-x}", env={}).render({}) == "x"
    assert Template("${A:-x}", env={"A": ""}).render({}) == "x"
    assert Template("${A:-x}", env={"A": "y"}).render({}) == "y"
    assert Template("${A}", env={}).render({}) == ""


def test_model_input_with_env_syntax_is_never_expanded():
    template = Template("q={{ input.q }}", env={"SECRET": "s3cret"})
    assert template.render({"input": {"q": "${SECRET}"}}) == "q=${SECRET}"
    url = UrlTemplate("https://api.example.com/{{ input.q }}", env={"SECRET": "s3cret"})
    assert url.render({"q": "${SECRET}"}) == "https://api.example.com/%24%7BSECRET%7D"


def test_url_path_values_stay_inside_their_segment():
    url = UrlTemplate("https://api.example.com/users/{{ input.id }}/posts", LOC)
    assert url.location == LOC
    assert url.render({"id": "a?b#c d"}) == "https://api.example.com/users/a%3Fb%23c%20d/posts"
    assert url.render({"id": 42}) == "https://api.example.com/users/42/posts"


@pytest.mark.parametrize("value", ["../admin", "..%2F..%2Fadmin", "a/b", "a\\b", "..", "%2e%2e"])
def test_url_path_values_that_could_leave_their_segment_are_refused(value):
    # Servers that decode %2F or \ before resolving dot segments would route these elsewhere.
    url = UrlTemplate("https://api.example.com/users/{{ input.id }}/posts")
    with pytest.raises(PathValueRefused, match="cannot fill a path segment"):
        url.render({"id": value})


def test_a_segments_placeholder_fills_several_segments_but_never_dot_dot():
    url = UrlTemplate("https://api.example.com/files/{{ input.path | segments }}")
    assert url.render({"path": "docs/a b.txt"}) == "https://api.example.com/files/docs/a%20b.txt"
    for bad in ("docs/../secret", "docs/..%2Fsecret", "a\\..\\b"):
        with pytest.raises(PathValueRefused, match="has a .. segment"):
            url.render({"path": bad})


def test_url_query_values_are_query_encoded():
    url = UrlTemplate("https://api.example.com/s?q={{ input.q }}&lang=en")
    assert url.render({"q": "a b&admin=1"}) == "https://api.example.com/s?q=a+b%26admin%3D1&lang=en"


def test_url_env_values_are_inserted_as_is():
    url = UrlTemplate(
        "https://${HOST}/v1/{{ input.x }}?key=${KEY}",
        env={"HOST": "api.example.com:8443", "KEY": "a/b+c"},
    )
    assert url.render({"x": "y z"}) == "https://api.example.com:8443/v1/y%20z?key=a/b+c"


def test_url_missing_input_renders_empty():
    url = UrlTemplate("https://api.example.com/{{ input.city }}")
    assert url.render({}) == "https://api.example.com/"


@pytest.mark.parametrize(
    "source",
    [
        "https://{{ input.host }}/x",
        "https://api.{{ input.region }}.example.com/",
        "https://api.example.com{{ input.path }}",
        "https://api.example.com:{{ input.port }}/",
        "https://{% if input.x %}a{% endif %}.example.com/",
    ],
)
def test_url_host_must_be_literal(source):
    with pytest.raises(TemplateProblem) as info:
        UrlTemplate(source)
    assert info.value.message == "the host must be literal: the model controls input"
    assert source[info.value.column : info.value.column + 1] == "{"


@pytest.mark.parametrize("source", ["api.example.com/x", "ftp://x.example.com/", "{{ input.u }}"])
def test_url_needs_http_scheme(source):
    with pytest.raises(TemplateProblem, match="must start with https://"):
        UrlTemplate(source)


def test_body_keeps_native_values():
    body = BodyTemplate(
        {
            "n": "{{ input.n }}",
            "text": "n={{ input.n }}",
            "list": ["{{ input.flag }}", 3, None],
            "missing": "{{ input.nope }}",
            "token": "${TOKEN}",
        },
        env={"TOKEN": "{{ t }}"},
    )
    out = body.render({"n": 5, "flag": True})
    assert out == {
        "n": 5,
        "text": "n=5",
        "list": [True, 3, None],
        "missing": None,
        "token": "{{ t }}",
    }
    assert type(out["token"]) is str


def test_body_syntax_error_has_a_path():
    with pytest.raises(TemplateProblem) as info:
        BodyTemplate({"a": [{"b": "{{ x"}]})
    assert info.value.path == ("a", 0, "b")


def _http(**kw):
    base = {"method": "GET", "url": UrlTemplate("https://api.example.com/{{ input.id }}")}
    base.update(kw)
    return ToolHttp(**base)


def test_render_request():
    http = _http(
        method="POST",
        params={"q": Template("{{ input.q }}")},
        headers={"Authorization": Template("Bearer ${K}", env={"K": "key"})},
        body=BodyTemplate({"id": "{{ input.id }}"}),
    )
    request = render_request(http, {"id": 7, "q": "a b"})
    assert request == RenderedRequest(
        method="POST",
        url="https://api.example.com/7",
        params={"q": "a b"},
        headers={"Authorization": "Bearer key"},
        json={"id": 7},
    )
    with pytest.raises(AttributeError):
        request.url = "x"  # type: ignore[misc]


def test_get_request_has_no_json():
    assert render_request(_http(), {"id": 1}).json is None


@pytest.mark.parametrize("bad", ["a\r\nX-Admin: 1", "a\nb", "a\rb"])
def test_header_injection_is_refused(bad):
    http = _http(headers={"X-Name": Template("{{ input.name }}")})
    with pytest.raises(RenderError, match='the header "X-Name" would contain a line break'):
        render_request(http, {"name": bad})
    assert isinstance(RenderError("x"), ValueError)
