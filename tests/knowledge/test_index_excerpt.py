from knowledge import excerpt_for_section, load_index
from knowledge.index import EXCERPT_LIMIT

STEP = "{n}. Step {n} about {topic}.\n\n    ```command\n    $ echo {n}\n    {filler}\n    ```\n"
RUNBOOK = """---
title: Runbook
docs_url: https://wiki.example/runbook/
---
## Long section

Intro with **bold**, a [link]({{home}}/docs/a.html) and `x < y && z`.

""" + "\n".join(
    STEP.format(n=n, topic="gateways" if n == 7 else "nothing much", filler="filler " * 60) for n in range(1, 13)
)


def runbook_index(tmp_path):
    path = tmp_path / "runbook.md"
    path.write_text(RUNBOOK)
    return load_index([str(path)], include_builtin=False, home="https://home.example")


def test_mrkdwn_conversion(tmp_path):
    text = excerpt_for_section(runbook_index(tmp_path), "long-section")
    assert "*bold*" in text and "**" not in text
    assert "<https://home.example/docs/a.html|link>" in text
    assert "`x &lt; y &amp;&amp; z`" in text
    assert "```\n$ echo 1\n" in text
    assert text.endswith("<https://wiki.example/runbook/#long-section|More: Long section>")


def test_plain_text_form(tmp_path):
    text = excerpt_for_section(runbook_index(tmp_path), "long-section", plain=True)
    assert "link (https://home.example/docs/a.html)" in text
    assert "x < y && z" in text and "```" not in text
    assert text.endswith("More: https://wiki.example/runbook/#long-section")


def test_excerpt_is_the_relevant_part_and_within_limits(tmp_path):
    index = runbook_index(tmp_path)
    full = index.section("long-section").text
    text = excerpt_for_section(index, "long-section", "which step covers gateways?")
    assert "Step 7 about gateways" in text
    assert "Step 12" not in text
    assert len(text) <= EXCERPT_LIMIT < len(full)
    assert text.count("```") % 2 == 0


def test_every_shared_section_excerpt_fits_slack(guide_index, builtin_index):
    for index in (guide_index, builtin_index):
        for section in index.sections:
            for question in (None, section.title):
                text = excerpt_for_section(index, section.id, question)
                assert len(text) <= EXCERPT_LIMIT
                assert text.endswith(f"<{section.url}|More: {section.title}>")
                assert text.count("```") % 2 == 0


def test_excerpt_for_unknown_section_is_none(builtin_index):
    assert excerpt_for_section(builtin_index, "no-such-section") is None


def test_builtin_excerpt_has_fix_and_commands(builtin_index):
    text = excerpt_for_section(builtin_index, "verify-mixer-is-receiving-report-calls")
    assert "*Fix:*" in text and "```" in text and "grpc_server_handled_total" in text


def test_parent_without_text_lists_its_subsections(guide_index):
    text = excerpt_for_section(guide_index, "how-can-i-debug-issues-with-the-service-mesh")
    assert "<https://istio.io/help/troubleshooting/#with-gdb|With GDB>" in text
