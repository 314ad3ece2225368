//! A fault schedule: shell commands run at set seconds of a run (`--fault AT=COMMAND`), e.g.
//! `deploy/fleet.sh fault kill-primary`, and how long goodput took to come back after each.
//!
//! The generator does not know what a command does; it records when the command started
//! and ended and its exit status, and the report draws it on the timeline. A command runs
//! in `sh -c`, its output goes to the loadtest's standard error, and it is not waited for
//! past the end of the run (it is killed then, and recorded as such).
//!
//! # Layout
//! - [`FaultSpec`]: one scheduled command (`AT=COMMAND`).
//! - [`run_schedule`]: runs a schedule from a start instant.
//! - [`recovery_s`]: seconds from a fault until goodput is back to 95 % of before.

use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use crate::results::{FaultEvent, SecondResult};

/// One scheduled command: `AT=COMMAND`, `AT` in seconds from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// A `sh -c` command line.
    pub command: String,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (at, command) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected AT_SECONDS=COMMAND"))?;
        let at_s: f64 = at
            .trim()
            .parse()
            .map_err(|_| format!("{at:?}: not a number of seconds"))?;
        if !at_s.is_finite() || at_s < 0.0 {
            return Err(format!("{at:?}: seconds must be 0 or more"));
        }
        if command.trim().is_empty() {
            return Err(format!("{s:?}: no command"));
        }
        Ok(FaultSpec {
            at_s,
            command: command.trim().to_owned(),
        })
    }
}

/// Runs every command of `specs` at `start + at_s`, until `stop` resolves; answers what ran.
pub async fn run_schedule(
    specs: Vec<FaultSpec>,
    start: Instant,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<FaultEvent> {
    let mut tasks = tokio::task::JoinSet::new();
    for spec in specs {
        tasks.spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(spec.at_s)).await;
            let began = Instant::now();
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&spec.command)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .status()
                .await;
            if let Err(e) = &status {
                eprintln!("loadtest: fault {:?} did not start: {e}", spec.command);
            }
            FaultEvent {
                command: spec.command,
                at_s: began.duration_since(start).as_secs_f64(),
                took_s: began.elapsed().as_secs_f64(),
                exit_code: status.ok().and_then(|s| s.code()),
                recovery_s: None,
            }
        });
    }
    let mut done = Vec::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(Ok(ev)) => done.push(ev),
                Some(Err(_)) => {}
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    tasks.abort_all();
    while let Some(r) = tasks.join_next().await {
        if let Ok(ev) = r {
            done.push(ev);
        }
    }
    done.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    done
}

/// Seconds before a fault whose goodput is the level to come back to.
pub const BASELINE_S: u64 = 5;

/// Seconds from a fault at `at_s` until goodput per second is back to 95 % of the mean of the
/// [`BASELINE_S`] whole seconds before it: to the start of the first whole second after the
/// fault's own second whose goodput reaches that level (so at most a second when the fault
/// never dented it). `None` when there is no second before the fault to compare with, or
/// goodput never came back.
pub fn recovery_s(seconds: &[SecondResult], at_s: f64) -> Option<f64> {
    // Seconds of a run fit a u64 many times over; a negative time is second 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let fault_second = at_s.max(0.0).floor() as u64;
    let before: Vec<u64> = seconds
        .iter()
        .filter(|s| s.t < fault_second && s.t + BASELINE_S >= fault_second)
        .map(|s| s.goodput)
        .collect();
    if before.is_empty() {
        return None;
    }
    let level = 0.95 * before.iter().sum::<u64>() as f64 / before.len() as f64;
    seconds
        .iter()
        .filter(|s| s.t > fault_second)
        .find(|s| s.goodput as f64 >= level)
        .map(|s| (s.t as f64 - at_s).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(t: u64, goodput: u64) -> SecondResult {
        SecondResult {
            t,
            goodput,
            ..SecondResult::default()
        }
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let f: FaultSpec = "12.5=deploy/fleet.sh fault kill-primary 5".parse().unwrap();
        assert_eq!(f.at_s, 12.5);
        assert_eq!(f.command, "deploy/fleet.sh fault kill-primary 5");
        assert!(
            "x=cmd"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("seconds")
        );
        assert!(
            "-1=cmd"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("0 or more")
        );
        assert!(
            "5=".parse::<FaultSpec>()
                .unwrap_err()
                .contains("no command")
        );
        assert!(
            "cmd"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("AT_SECONDS")
        );
    }

    #[test]
    fn recovery_is_the_first_second_back_at_95_percent() {
        // 100/s before, a dip at 10..13, back to 96 at 13.
        let s: Vec<_> = (0..20)
            .map(|t| {
                second(
                    t,
                    if (10..13).contains(&t) {
                        20
                    } else if t == 13 {
                        96
                    } else {
                        100
                    },
                )
            })
            .collect();
        assert_eq!(recovery_s(&s, 10.2), Some(13.0 - 10.2));
        // Never dented: the next whole second.
        let flat: Vec<_> = (0..20).map(|t| second(t, 100)).collect();
        assert_eq!(recovery_s(&flat, 10.0), Some(1.0));
        // Never back.
        let dead: Vec<_> = (0..20)
            .map(|t| second(t, if t >= 10 { 0 } else { 100 }))
            .collect();
        assert_eq!(recovery_s(&dead, 10.0), None);
        // Nothing before to compare with.
        assert_eq!(recovery_s(&flat, 0.0), None);
    }

    #[test]
    fn labels_name_the_fault() {
        let ev = FaultEvent {
            command: "/x/deploy/fleet.sh fault kill-gateway 1 1".into(),
            at_s: 1.0,
            took_s: 1.0,
            exit_code: Some(0),
            recovery_s: None,
        };
        assert_eq!(ev.label(), "kill-gateway 1 1");
    }
}
