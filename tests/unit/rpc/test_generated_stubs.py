from voicefleet.rpc import codegen


def test_committed_stubs_match_tts_proto() -> None:
    assert codegen.stale_files() == [], "run 'make proto' and commit src/rpc/generated/"


def test_every_proto_field_and_rpc_is_documented() -> None:
    lines = codegen.PROTO_FILE.read_text().splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        is_field = stripped.endswith(";") and "=" in stripped and not stripped.startswith("option")
        is_rpc = stripped.startswith("rpc ")
        if is_field or is_rpc:
            above = lines[number - 1].strip()
            assert above.startswith("//"), f"tts.proto:{number + 1} undocumented: {stripped}"
