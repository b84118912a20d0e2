//! Shell completions of `kairos-ext`.

use clap_complete::Shell;

const BIN: &str = "kairos-ext";

/// The completion script of `kairos-ext` for `shell`.
pub fn render(shell: Shell) -> anyhow::Result<String> {
    let mut cmd = crate::kairos_ext_command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    let script = String::from_utf8(out)?;
    Ok(if shell == Shell::Bash { fix_bash_state_labels(&script) } else { script })
}

/// clap_complete's bash script tracks the subcommand as `kairos__ext__subcmd__install`
/// but labels the branch for it `kairos__subcmd__ext__subcmd__install` when the binary's
/// name has a hyphen, so no verb's options ever complete (clap-rs/clap#6421). Labels are
/// spelled the way the tracking loop spells them; once clap_complete agrees, this changes
/// nothing.
fn fix_bash_state_labels(script: &str) -> String {
    script.replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bash_branch_is_reachable() -> anyhow::Result<()> {
        let script = render(Shell::Bash)?;
        assert!(script.contains("        kairos__ext__subcmd__install)"), "{script}");
        assert!(!script.contains("kairos__subcmd__ext"));
        Ok(())
    }
}
