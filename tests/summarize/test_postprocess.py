from relsum.policy.postprocess import clean_summary, strip_prompt_echo
from relsum.policy.prompt import INSTRUCTION, build_prompt


def test_strips_markup_urls_and_markdown():
    raw = (" <b>colour:</b> red &amp; blue,\n see https://shop.example.com/x?y=1 or www.example.org "
           "**fast**  charge ")
    assert clean_summary(raw) == "colour: red & blue, see or fast charge"


def test_caps_whitespace_tokens():
    raw = " ".join(f"w{i}" for i in range(100))
    assert clean_summary(raw, max_words=5) == "w0 w1 w2 w3 w4"
    assert len(clean_summary(raw, max_words=0).split()) == 100  # 0 = no cap


def test_strips_echoed_prompt_frame():
    echoed = build_prompt("Acme Drill", "cordless 18 V drill") + " cordless, 18 V"
    assert clean_summary(echoed) == "cordless, 18 V"
    assert clean_summary(INSTRUCTION + " battery: 2 Ah") == "battery: 2 Ah"
    assert clean_summary("[TITLE]: battery: 2 Ah") == "battery: 2 Ah"


def test_cuts_a_new_frame_started_later():
    assert strip_prompt_echo(" weight: 2 kg [DESCRIPTION]: another product").strip() == "weight: 2 kg"


def test_keeps_plain_summaries_and_handles_empty():
    assert clean_summary(" colour: red, size: 5 mm") == "colour: red, size: 5 mm"
    assert clean_summary("size <5 mm") == "size <5 mm"
    assert clean_summary(None) == "" and clean_summary("   ") == ""
    assert clean_summary("red\ufffd") == "red"
