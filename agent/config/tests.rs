use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("/etc/endo-agent/agent.toml"),
        Path::new("/etc/endo-agent"),
    )
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.source.kind, SourceKind::Phantom);
    assert_eq!(c.http.listen, "127.0.0.1:9464");
}

#[test]
fn unknown_key_is_named_with_the_file() {
    let e = parse("[select]\nthreshold_hi = 0.7\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/etc/endo-agent/agent.toml"), "{e}");
    assert!(e.contains("threshold_hi"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = parse("[source]\nfps = \"sixty\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fps") || e.contains("line 2"), "{e}");
    assert!(e.contains("invalid type"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_dir() {
    let c = parse("[model]\npath = \"m.onnx\"\n").unwrap();
    assert_eq!(c.model.path, PathBuf::from("/etc/endo-agent/m.onnx"));
}

#[test]
fn non_finite_scoring_values_are_refused_naming_the_key() {
    // Issue 12 item 6: NaN compared false with everything and passed check-config.
    for (text, key) in [
        (
            "[scoring]\nnoise_sigma = [nan, 16.0]\n",
            "scoring.noise_sigma",
        ),
        ("[scoring]\nblockiness = [1.5, inf]\n", "scoring.blockiness"),
        ("[scoring]\nsharpness_good = nan\n", "scoring.sharpness_bad"),
        ("[scoring]\nisotropy_bad = -inf\n", "scoring.isotropy_bad"),
        ("[scoring]\nmodel_weight = nan\n", "scoring.model_weight"),
        ("[scoring]\nmodel_weight = 1.5\n", "scoring.model_weight"),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}

#[test]
fn every_integer_key_is_refused_just_outside_its_range_naming_the_key() {
    let d = Config::default();
    for (key, v, lo, hi) in d.int_ranges() {
        assert!((lo..=hi).contains(&v), "{key}: the default {v} is refused");
        let (section, name) = key.split_once('.').unwrap();
        let outside = [lo.checked_sub(1), hi.checked_add(1)];
        for bad in outside.into_iter().flatten() {
            let text = format!("[{section}]\n{name} = {bad}\n");
            let e = parse(&text).expect_err(&text).to_string();
            // Beyond the field's type, TOML refuses it and names the line instead.
            assert!(e.contains(key) || e.contains(name), "{text}: {e}");
        }
        for good in [lo, hi] {
            let text = format!("[{section}]\n{name} = {good}\n");
            if let Err(ConfigError::Invalid { why, .. }) = parse(&text) {
                // Only a cross-key rule (backoff initial ≤ max, min ≤ frames) may refuse it.
                assert!(!why.contains("is outside"), "{text}: {why}");
            }
        }
    }
}

#[test]
fn a_huge_value_is_named_not_echoed() {
    // Issue 12 item 10: a 10 MB value came back whole in the error.
    let huge = "x".repeat(10 << 20);
    for text in [
        format!("[agent]\nsite = \"{huge}\"\n"),
        format!("[http]\nlisten = \"{huge}\"\n"),
        format!("[agent]\nsite = {huge}\n"), // not TOML: the parser quotes the line
    ] {
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.len() < 2000, "{} bytes: {}", e.len(), &e[..300]);
        assert!(e.contains("bytes in all"), "{e}");
    }
}

#[test]
fn the_example_config_notes_every_range_beside_its_key() {
    let text = include_str!("../../config/agent.example.toml");
    let line_of = |key: &str| {
        let (section, name) = key.split_once('.').unwrap();
        let body = text.split(&format!("\n[{section}]\n")).nth(1).unwrap();
        let body = body.split("\n[").next().unwrap();
        body.lines()
            .find(|l| l.starts_with(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{key} is not in the example"))
            .to_string()
    };
    let d = Config::default();
    for (key, _, lo, hi) in d.int_ranges() {
        let l = line_of(key);
        assert!(l.ends_with(&format!("# {lo}..{hi}")), "{key}: {l}");
    }
    for (key, _, lo, hi) in d.float_ranges() {
        let l = line_of(key);
        assert!(
            l.ends_with(&format!("# above {lo}, at most {hi}")),
            "{key}: {l}"
        );
    }
}

#[test]
fn the_values_that_broke_run_are_refused_by_check_config() {
    // Issue 12 item 6: each of these passed check-config and then broke `run`.
    for (text, key) in [
        ("[spool]\nmax_mib = 17592186044416\n", "spool.max_mib"), // 2^44 << 20 wrapped to 0
        (
            "[encode]\nqueue_frames = 1000000000000\n",
            "encode.queue_frames",
        ), // aborted allocating
        (
            "[select]\nwindow_ms = 9223372036854775807\n",
            "select.window_ms",
        ), // wrapped to ~0
        ("[select]\nmax_per_second = nan\n", "select.max_per_second"),
        ("[select]\nmax_per_second = inf\n", "select.max_per_second"),
        ("[operator]\npreview_fps = nan\n", "operator.preview_fps"),
        ("[datalake]\ndir = \"\"\n", "datalake.dir"), // wrote into the working directory
        ("[spool]\ndir = \"\"\n", "spool.dir"),
        ("[model]\npath = \"\"\n", "model.path"),
    ] {
        match parse(text) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    assert!(parse("[model]\npath = \"\"\nenabled = false\n").is_ok());
}

#[test]
fn invalid_values_name_the_key() {
    let e = parse("[select]\nthreshold_high = 0.4\nthreshold_low = 0.5\n").unwrap_err();
    assert!(e.to_string().contains("select.threshold_low"), "{e}");
    let e = parse("[agent]\nsite = \"a/b\"\n").unwrap_err();
    assert!(e.to_string().contains("agent.site"), "{e}");
    let e = parse("[fov]\nmode = \"fixed\"\n").unwrap_err();
    assert!(e.to_string().contains("fov.rect"), "{e}");
    // Issue 12 item 3: x + width wrapped and the mask was silently not applied.
    let e = parse("[fov]\nmasks = [[1, 0, 4294967295, 200]]\n").unwrap_err();
    assert!(e.to_string().contains("fov.masks"), "{e}");
    let e = parse("[fov]\nmasks = [[0, 0, 10, 10], [5, 5, 0, 10]]\n").unwrap_err();
    assert!(e.to_string().contains("fov.masks"), "{e}");
    let e = parse("[fov]\nmode = \"fixed\"\nrect = [4294967295, 0, 100, 100]\n").unwrap_err();
    assert!(e.to_string().contains("fov.rect"), "{e}");
    // Partly outside any frame is fine: it is clipped at run time.
    assert!(parse("[fov]\nmasks = [[1000, 0, 5000, 200]]\n").is_ok());
    assert!(parse("[fov]\nmode = \"fixed\"\nrect = [5000, 5000, 100, 100]\n").is_ok());
    let e = parse("[source]\nkind = \"v4l2\"\ncaps = \"video/x-raw ! fakesink\"\n").unwrap_err();
    assert!(e.to_string().contains("source.caps"), "{e}");
    // A share group is one topic level: a wildcard or a slash would change the filter.
    for g in ["a/b", "+", "#", "x y"] {
        let e = parse(&format!("[ingest]\nshare_group = \"{g}\"\n")).unwrap_err();
        assert!(e.to_string().contains("ingest.share_group"), "{g}: {e}");
    }
    assert!(parse("[ingest]\nshare_group = \"endo-ingest\"\n").is_ok());
    let e = parse("[ingest]\nlisten = \"localhost\"\n").unwrap_err();
    assert!(e.to_string().contains("ingest.listen"), "{e}");
    assert!(parse("[ingest]\nlisten = \"0.0.0.0:9465\"\n").is_ok());
}

#[test]
fn the_operator_sections_refuse_what_cannot_work_and_name_the_key() {
    let key_of = |text: &str| match parse(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("{text:?} gave {other:?}"),
    };
    // Reachable from other machines: a token is required, and must be a real one.
    assert_eq!(key_of("[http]\nlisten = \"0.0.0.0:9464\"\n"), "http.token");
    assert!(parse("[http]\nlisten = \"0.0.0.0:9464\"\ntoken = \"0123456789abcdef\"\n").is_ok());
    assert!(parse("[http]\nlisten = \"0.0.0.0:9464\"\ntoken_file = \"tok\"\n").is_ok());
    assert_eq!(key_of("[http]\ntoken = \"short\"\n"), "http.token");
    assert_eq!(
        key_of("[http]\ntoken = \"0123456789abcdef\"\ntoken_file = \"tok\"\n"),
        "http.token"
    );
    // Loopback needs none.
    assert!(parse("[http]\nlisten = \"[::1]:9464\"\n").is_ok());
    assert_eq!(key_of("[operator]\nlabels = []\n"), "operator.labels");
    assert_eq!(
        key_of("[operator]\nlabels = [\"a\", \"a\"]\n"),
        "operator.labels"
    );
    assert_eq!(
        key_of("[operator]\nlabels = [\"a/b\"]\n"),
        "operator.labels"
    );
    assert_eq!(
        key_of("[operator]\npreview_fps = 0.0\n"),
        "operator.preview_fps"
    );
    assert_eq!(
        key_of("[display]\nenabled = true\nsink = \"queue ! fakesink\"\n"),
        "display.sink"
    );
    let e = parse("[display]\nposition = \"middle\"\n").unwrap_err();
    assert!(e.to_string().contains("middle"), "{e}");
}
