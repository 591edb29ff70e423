//! `pg-node certs`: a cluster CA and node certificates as PEM files, for
//! deployments without a certificate manager (and to see what one must
//! produce: docs/operations.md#certificates).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use pg_api::DevCa;

/// What `pg-node certs` does.
#[derive(Subcommand)]
pub(crate) enum CertsCommand {
    /// Makes a cluster CA: DIR/ca.pem (share it with every node) and
    /// DIR/ca.key (keep it secret; it makes nodes of the cluster).
    CreateCa {
        /// Where to write the files.
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's name (in the CA's common name).
        #[arg(long)]
        cluster: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issues node NAME's certificate from the CA in DIR: DIR/NAME.pem and
    /// DIR/NAME.key, the files a pg.node entry's `tls` points to.
    CreateNode {
        /// The node's name (its `name` in the configuration).
        name: String,
        /// Where the CA is, and where to write the files.
        #[arg(long)]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
}

pub(crate) fn run(command: &CertsCommand) -> Result<(), Box<dyn std::error::Error>> {
    let days = |d: u64| Duration::from_secs(d.saturating_mul(24 * 3600));
    match command {
        CertsCommand::CreateCa {
            dir,
            cluster,
            days: d,
        } => {
            std::fs::create_dir_all(dir)?;
            let ca = DevCa::generate_valid_for(cluster, days(*d))?;
            write_new(&dir.join("ca.pem"), &ca.certificate_pem(), false)?;
            write_new(&dir.join("ca.key"), &ca.key_pem(), true)?;
            println!("wrote {0}/ca.pem and {0}/ca.key", dir.display());
        }
        CertsCommand::CreateNode { name, dir, days: d } => {
            pg_api::NodeName::new(name)?;
            let read = |file: &str| {
                let path = dir.join(file);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            let ca = DevCa::from_pem(&read("ca.pem")?, &read("ca.key")?)?;
            let (cert, key) = ca.issue_pem_valid_for(name, days(*d))?;
            write_new(&dir.join(format!("{name}.pem")), &cert, false)?;
            write_new(&dir.join(format!("{name}.key")), &key, true)?;
            println!("wrote {0}/{name}.pem and {0}/{name}.key", dir.display());
        }
    }
    Ok(())
}

/// Writes `text` to a file that must not exist yet (never overwrite a key
/// by mistake); a secret is readable by its owner only.
fn write_new(path: &Path, text: &str, secret: bool) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
