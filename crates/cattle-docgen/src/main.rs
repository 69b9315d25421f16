//! `cattle-docgen OUTDIR`: writes the man pages and shell completions of
//! `cattle` and `cattle-agent` under OUTDIR (layout: see the library).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;

/// Write the man pages and shell completions (bash, zsh, fish) of `cattle`
/// and `cattle-agent`, made from their command-line definitions.
///
/// The pages are dated by SOURCE_DATE_EPOCH (seconds since 1970) when it is
/// set, as reproducible builds set it, else today.
#[derive(Debug, Parser)]
#[command(name = "cattle-docgen", version)]
struct Args {
    /// Where to write them: `man/PROGRAM/*.1` and `completions/SHELL/*`
    /// (made if missing; files already there with the same names are replaced).
    out_dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = page_date()
        .and_then(|date| cattle_docgen::generate(&args.out_dir, &date).map_err(|e| e.to_string()));
    match result {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cattle-docgen: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `YYYY-MM-DD` of SOURCE_DATE_EPOCH, or of today when it is unset.
fn page_date() -> Result<String, String> {
    const VAR: &str = "SOURCE_DATE_EPOCH";
    let time = match std::env::var(VAR) {
        Ok(value) => {
            let seconds: u64 = value.trim().parse().map_err(|_| {
                format!("{VAR}=`{value}` is not a number of seconds since 1970; unset it or fix it")
            })?;
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
        }
        Err(std::env::VarError::NotPresent) => SystemTime::now(),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "{VAR} is not a number of seconds since 1970; unset it or fix it"
            ));
        }
    };
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    Ok(rfc3339[..10].to_string())
}
