//! The command line as a whole: flags and environment variables parse
//! to the settings documented, and refusals say what is accepted.

use super::*;
use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

use outboxd_core::DeliveryState;

#[test]
fn an_empty_allow_list_flag_is_accepted() {
    let parse =
        |value: &str| match Cli::parse_from(["outboxd", "run", "--allow-private-targets", value])
            .command
        {
            Command::Run(args) => args.allow_private_targets.0,
            other => panic!("parsed as {other:?}"),
        };
    assert!(parse("").is_empty());
    assert_eq!(parse("127.0.0.0/8,::1/128").len(), 2);
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let parse = |args: &[&str]| match Cli::parse_from([&["outboxd", "run"], args].concat()).command
    {
        Command::Run(args) => args,
        other => panic!("parsed as {other:?}"),
    };
    assert!(parse(&[]).check_admin().is_ok());
    assert!(parse(&["--admin-listen", "127.0.0.1:9188"])
        .check_admin()
        .is_ok());
    let open = parse(&["--admin-listen", "0.0.0.0:9188"])
        .check_admin()
        .unwrap_err();
    assert!(open.contains("OUTBOXD_ADMIN_TOKEN"), "{open}");
    let args = parse(&[
        "--admin-listen",
        "0.0.0.0:9188",
        "--admin-token",
        "0123456789abcdef0",
    ]);
    assert!(args.check_admin().is_ok());
    assert!(!format!("{args:?}").contains("0123456789abcdef0"));
    assert!(parse_token("short").is_err());
}

fn run_args(args: &[&str]) -> Result<RunArgs, String> {
    match Cli::try_parse_from([&["outboxd", "run"], args].concat()) {
        Ok(Cli {
            command: Command::Run(args),
        }) => Ok(*args),
        Ok(other) => panic!("parsed as {other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn booleans_take_the_usual_spellings() {
    for (value, want) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("0", false),
        ("no", false),
        ("OFF", false),
    ] {
        assert_eq!(parse_bool(value), Ok(want), "{value}");
        let flag = format!("--no-migrate={value}");
        assert_eq!(run_args(&[&flag]).unwrap().no_migrate, want, "{flag}");
        let flag = format!("--synchronous-commit={value}");
        assert_eq!(
            run_args(&[&flag]).unwrap().synchronous_commit,
            want,
            "{flag}"
        );
    }
    assert!(run_args(&["--no-migrate"]).unwrap().no_migrate);
    assert!(!run_args(&[]).unwrap().no_migrate);
    let refused = parse_bool("maybe").unwrap_err();
    assert!(
        refused.contains("true or false") && refused.contains("yes/no"),
        "{refused}"
    );
}

#[test]
fn the_log_format_is_case_insensitive() {
    assert_eq!(
        run_args(&["--log-format", "JSON"]).unwrap().log_format,
        LogFormat::Json
    );
    assert_eq!(
        run_args(&["--log-format", "Text"]).unwrap().log_format,
        LogFormat::Text
    );
    let refused = run_args(&["--log-format", "yaml"]).unwrap_err();
    assert!(
        refused.contains("text") && refused.contains("json"),
        "{refused}"
    );
}

#[test]
fn an_empty_admin_listen_means_off() {
    assert_eq!(
        run_args(&["--admin-listen", ""]).unwrap().admin_listen.0,
        None
    );
    assert_eq!(
        run_args(&["--admin-listen", "off"]).unwrap().admin_listen.0,
        None
    );
    assert_eq!(run_args(&[]).unwrap().admin_listen.0, None);
    assert_eq!(
        run_args(&["--admin-listen", "127.0.0.1:9188"])
            .unwrap()
            .admin_listen
            .0,
        Some("127.0.0.1:9188".parse().unwrap())
    );
    let refused = parse_optional_addr("nope").unwrap_err();
    assert!(
        refused.contains("IP:PORT") && refused.contains("off"),
        "{refused}"
    );
}

#[test]
fn settings_are_logged_as_people_write_them() {
    assert_eq!(human(Duration::from_secs(7 * 86400)), "7days");
    assert_eq!(human(Duration::from_secs(30)), "30s");
    assert_eq!(human(Duration::from_millis(1500)), "1s 500ms");
    assert_eq!(human_or_off(Duration::ZERO), "off");
    assert_eq!(human_or_off(Duration::from_secs(5 * 86400)), "5days");
    assert_eq!(or_off(None::<SocketAddr>), "off");
    assert_eq!(
        or_off(Some("127.0.0.1:9188".parse::<SocketAddr>().unwrap())),
        "127.0.0.1:9188"
    );
    assert_eq!(or_none(&AllowList::default()), "none");
    assert_eq!(
        or_none(&parse_allow_list("127.0.0.0/8,::1").unwrap()),
        "127.0.0.0/8,::1/128"
    );
}

#[test]
fn every_refusal_says_what_is_accepted() {
    for (args, accepted) in [
        (&["--batch-size", "0"][..], "from 1 to 10000"),
        (&["--lease", "soon"][..], "30s"),
        (&["--disable-failing-after", "never"][..], "or off"),
        (&["--listen", "9187"][..], "IP:PORT"),
        (&["--allow-private-targets", "localhost"][..], "10.0.0.0/8"),
        (&["--admin-token", "short"][..], "16 characters"),
        (&["--no-migrate=maybe"][..], "true or false"),
        (&["--log-format", "JSON5"][..], "json"),
    ] {
        let refused = run_args(args).unwrap_err();
        assert!(refused.contains(accepted), "{args:?}: {refused}");
    }
}

#[test]
fn a_state_filter_is_one_of_the_delivery_states() {
    let parse = |state: &str| match Cli::try_parse_from(["outboxd", "deliveries", "--state", state])
    {
        Ok(Cli {
            command: Command::Deliveries(args),
        }) => Ok(args.filter.state),
        Ok(other) => panic!("parsed as {other:?}"),
        Err(e) => Err(e.to_string()),
    };
    assert_eq!(parse("in_flight"), Ok(Some(DeliveryState::InFlight)));
    let refused = parse("done").unwrap_err();
    assert!(
        refused.contains("pending, in_flight, held, delivered, failed, cancelled"),
        "{refused}"
    );
}

#[test]
fn the_admin_token_can_come_from_a_file() {
    let run = |args: &[&str]| {
        Cli::try_parse_from([&["outboxd", "run"], args].concat()).map(|c| match c.command {
            Command::Run(args) => *args,
            other => panic!("parsed as {other:?}"),
        })
    };
    let dir = std::env::temp_dir().join(format!("outboxd-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
    let path = file.to_str().unwrap();
    let mut args = run(&["--admin-token-file", path]).unwrap();
    args.read_admin_token_file().unwrap();
    assert_eq!(args.admin_token, Some(Token("0123456789abcdef0123".into())));

    let both = run(&[
        "--admin-token-file",
        path,
        "--admin-token",
        "0123456789abcdef0",
    ]);
    assert!(both.is_err(), "the token and its file are exclusive");

    let missing = dir.join("missing");
    let mut args = run(&["--admin-token-file", missing.to_str().unwrap()]).unwrap();
    let e = args.read_admin_token_file().unwrap_err();
    assert!(e.starts_with("OUTBOXD_ADMIN_TOKEN_FILE ("), "{e}");

    std::fs::write(&file, "short\n").unwrap();
    let mut args = run(&["--admin-token-file", path]).unwrap();
    let e = args.read_admin_token_file().unwrap_err();
    assert!(
        e.contains("OUTBOXD_ADMIN_TOKEN_FILE") && e.contains("too short"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_command_line_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
