"""The README's directive reference against the module's command table."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]

CONTEXTS = {
    "NGX_HTTP_MAIN_CONF": "http",
    "NGX_HTTP_SRV_CONF": "server",
    "NGX_HTTP_LOC_CONF": "location",
}


def command_table():
    """{directive: [contexts]} from every ngx_command_t table in the module."""
    commands = {}
    for src in sorted((ROOT / "ngx_vantage_module").glob("*.c")):
        text = src.read_text()
        tables = "".join(re.findall(
            r"ngx_command_t\s+\w+\[\]\s*=\s*\{(.*?)ngx_null_command", text,
            re.S))
        for m in re.finditer(
                r'\{\s*ngx_string\("([a-z_]+)"\),\s*([A-Z0-9_|]+),', tables):
            flags = m.group(2).split("|")
            commands[m.group(1)] = [CONTEXTS[f] for f in
                                    ("NGX_HTTP_MAIN_CONF", "NGX_HTTP_SRV_CONF",
                                     "NGX_HTTP_LOC_CONF") if f in flags]
    return commands


def readme_reference():
    """{directive: section text} from README's "Directive reference"."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Directive reference")
    end = text.find("\n## ", start + 1)
    ref = text[start:end if end != -1 else len(text)]
    sections = re.split(r"^### ", ref, flags=re.M)[1:]
    return {s.split("\n", 1)[0].strip(): s for s in sections}


def test_every_directive_is_documented_and_nothing_else():
    commands = command_table()
    documented = readme_reference()
    assert len(commands) >= 14
    assert sorted(documented) == sorted(commands)


def test_each_entry_has_syntax_default_context_and_example():
    commands = command_table()
    for name, section in readme_reference().items():
        syntax = re.search(r"^- Syntax: `(.+)`$", section, re.M)
        assert syntax, name
        assert syntax.group(1).startswith(name + " ") or \
            syntax.group(1).startswith(name + ";"), name
        assert re.search(r"^- Default: .+$", section, re.M), name
        context = re.search(r"^- Context: (.+)$", section, re.M)
        assert context, name
        assert [c.strip() for c in context.group(1).split(",")] == \
            commands[name], name
        example = re.search(r"```nginx\n(.*?)```", section, re.S)
        assert example and name in example.group(1), name
