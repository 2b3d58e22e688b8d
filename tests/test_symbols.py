from tracer.kernel.symbols import choose_symbol, kallsyms_text_names


def test_exact_name_wins_and_cold_is_never_chosen():
    names = ["oom_kill_process.cold", "oom_kill_process", "oom_kill_process.isra.0"]
    assert choose_symbol("oom_kill_process", names) == "oom_kill_process"


def test_a_clone_counts_when_the_exact_name_is_gone():
    assert choose_symbol("oom_kill_process", ["oom_kill_process.cold", "oom_kill_process.constprop.0"]) \
        == "oom_kill_process.constprop.0"
    assert choose_symbol("oom_kill_process", ["oom_kill_process.isra.0.cold"]) is None
    assert choose_symbol("oom_kill_process", ["oom_kill_process.constprop.0.isra.0",
                                              "oom_kill_process.isra.3"]) == "oom_kill_process.isra.3"


def test_only_the_cold_fragment_or_other_functions_means_none():
    assert choose_symbol("oom_kill_process", ["oom_kill_process.cold", "__oom_kill_process",
                                              "oom_kill_process_x"]) is None


def test_untraceable_names_are_skipped():
    names = ["oom_kill_process", "oom_kill_process.isra.0"]
    assert choose_symbol("oom_kill_process", names, traceable={"oom_kill_process.isra.0"}) \
        == "oom_kill_process.isra.0"
    assert choose_symbol("oom_kill_process", names, traceable=set()) is None


def test_kallsyms_reader_keeps_text_symbols(tmp_path):
    f = tmp_path / "kallsyms"
    f.write_text("ffffffff81212346 t oom_kill_process.cold\nffffffff81599310 t oom_kill_process\n"
                 "ffffffff82000000 d oom_kill_process_data\n0000000000000000 T other\n")
    assert kallsyms_text_names(f, "oom_kill") == ["oom_kill_process.cold", "oom_kill_process"]
    assert kallsyms_text_names(tmp_path / "missing") == []
