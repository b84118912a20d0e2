//! The two generated man pages: clap_mangen renders what the parsers define (synopsis,
//! options, verbs); the sections no parser knows about (exit status, files, examples)
//! are written here.

use clap_mangen::Man;
use clap_mangen::roff::Roff;

use crate::commands;

const SOURCE: &str = concat!("kairos-extensions ", env!("CARGO_PKG_VERSION"));
const MANUAL: &str = "kairos-extensions";

/// `kairos-ext(1)`.
pub fn kairos_ext() -> anyhow::Result<String> {
    let cmd = crate::kairos_ext_command();
    let man = Man::new(cmd.clone()).title("KAIROS-EXT").section("1").source(SOURCE).manual(MANUAL);
    let mut page = Page::default();
    page.push(&man, Man::render_title)?;
    page.push(&man, Man::render_name_section)?;
    page.push(&man, Man::render_synopsis_section)?;
    page.push(&man, Man::render_description_section)?;
    page.push(&man, Man::render_options_section)?;
    page.raw(&commands::section(&cmd));
    page.raw(KAIROS_EXT_SECTIONS);
    Ok(page.text)
}

/// `kairos-extensionsd(8)`.
pub fn kairos_extensionsd() -> anyhow::Result<String> {
    let cmd = crate::kairos_extensionsd_command();
    let man = Man::new(cmd.clone()).title("KAIROS-EXTENSIONSD").section("8").source(SOURCE).manual(MANUAL);
    let mut page = Page::default();
    page.push(&man, Man::render_title)?;
    page.push(&man, Man::render_name_section)?;
    page.push(&man, Man::render_synopsis_section)?;
    page.raw(KAIROS_EXTENSIONSD_DESCRIPTION);
    page.push(&man, Man::render_options_section)?;
    page.raw(&commands::section(&cmd));
    page.raw(KAIROS_EXTENSIONSD_SECTIONS);
    Ok(page.text)
}

/// A page put together from rendered sections. Every clap_mangen section starts with the
/// same apostrophe preamble; the page keeps only the first.
#[derive(Default)]
struct Page {
    text: String,
}

impl Page {
    fn push(
        &mut self,
        man: &Man,
        section: fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut out = Vec::new();
        section(man, &mut out)?;
        self.raw(&String::from_utf8(out)?);
        Ok(())
    }

    fn raw(&mut self, text: &str) {
        let preamble = Roff::new().render();
        match text.strip_prefix(preamble.as_str()) {
            Some(rest) if !self.text.is_empty() => self.text.push_str(rest),
            _ => self.text.push_str(text),
        }
    }
}

const KAIROS_EXT_SECTIONS: &str = r#".SH "BOOT STATES"
An extension is enabled per boot state.
\fBcommon\fR applies to every boot.
\fBactive\fR, \fBpassive\fR and \fBrecovery\fR are the Kairos boot modes, which immucore announces with
\fI/run/cos/\fR\fISTATE\fR\fI_mode\fR; the automatic reset boot counts as \fBrecovery\fR.
On a system that is not Kairos there is no such file and only \fBcommon\fR applies.
.PP
\fB\-\-now\fR also changes the running system when the state concerns the current boot:
it links or unlinks the image in \fI/run/extensions\fR, refreshes the merge and checks that the
extension really merged (or left).
Offline, it is only accepted with \fB\-\-root /\fR.
.SH OUTPUT
Verbs that print data (\fBlist\fR, \fBinspect\fR, \fBstatus\fR, \fBjobs\fR, \fBrefresh\fR, \fBmonitor\fR)
print text for people by default: times in local time, sizes in binary units (KiB, MiB, GiB),
colour when standard output is a terminal. \fB\-\-json\fR=\fIMODE\fR prints JSON instead, with the exact
values (times in microseconds since the epoch, sizes in bytes): \fBshort\fR (one line per document,
what a bare \fB\-\-json\fR means), \fBpretty\fR (indented) or \fBoff\fR (text).
\fBmonitor\fR prints one line (or JSON object) per signal, with the time it arrived.
.PP
On a terminal, text longer than the screen goes through a pager, as \fBsystemctl\fR(1) does it
(see \fBSYSTEMD_PAGER\fR below); \fB\-\-no\-pager\fR turns it off, and \fBmonitor\fR never uses one.
\fB\-\-no\-legend\fR leaves out column headers, hints and notes such as "No extensions installed.".
\fB\-q\fR leaves out confirmations of changes, progress and hints; data that was asked for and
errors are still printed.
.PP
Messages name the command line's options, and read the same through the service and offline.
.SH "EXIT STATUS"
The statuses follow systemd's where they have a meaning here: 2 is its \fBEXIT_INVALIDARGUMENT\fR,
4 \fBEXIT_NOPERMISSION\fR and 5 \fBEXIT_NOTINSTALLED\fR. They are the same through the service and
offline.
.TP
.B 0
The command succeeded.
.TP
.B 1
The command failed; the reason is printed on standard error.
.TP
.B 2
The command line could not be parsed, or asks for what cannot be done, such as \fB\-\-root\fR with a
verb that needs the service.
.TP
.B 3
No such extension or job.
.TP
.B 4
Not authorized: polkit refused, or needed a password that could not be asked for; offline, the file
system refused (the store is root's).
.TP
.B 5
The service is not available: it is not running and the bus cannot start it, or the system bus cannot
be reached. As root, \fB\-\-root /\fR works without it.
.SH ENVIRONMENT
.TP
.B DBUS_SYSTEM_BUS_ADDRESS
The system bus to reach the service on, instead of \fI/run/dbus/system_bus_socket\fR.
.TP
.B RUST_LOG
A log filter (for example \fBdebug\fR) that overrides \fB\-v\fR.
.TP
.B NO_COLOR
When set and not empty, no colour (see \fIhttps://no\-color.org\fR). Colour is also off when standard
output is not a terminal and when \fBTERM\fR is \fBdumb\fR.
.TP
.B SYSTEMD_COLORS
A boolean that forces colour on or off, as for systemd's tools.
.TP
.B SYSTEMD_PAGER
The pager for long output on a terminal; \fBPAGER\fR when unset, else \fBless\fR. \fBcat\fR or an empty
value means no pager. It runs through \fB/bin/sh \-c\fR.
.TP
.B PAGER
The pager when \fBSYSTEMD_PAGER\fR is not set.
.TP
.B SYSTEMD_LESS
The options given to \fBless\fR in \fBLESS\fR (default \fBFRSXMK\fR: quit when the text fits on the
screen, keep colours, let Ctrl\-C quit).
.TP
.B SYSTEMD_PAGERSECURE
A boolean. When true, and by default for root under \fBsudo\fR(8) or \fBpkexec\fR(1), the pager variables
are ignored and only \fBless\fR runs, in its secure mode.
.TP
.B TZ
The time zone of the times in text output, instead of \fI/etc/localtime\fR.
.SH FILES
.TP
.I /etc/kairos/extensions.toml
The configuration offline mode reads, under the \fB\-\-root\fR directory
(see \fBkairos\-extensionsd\fR(8)); \fB\-\-config\fR names another file.
.TP
.I /var/lib/kairos/extensions/
The store: \fINAME\fR\fI.raw\fR images, one directory of links per boot state, and
provenance records in \fI.meta/\fR.
.TP
.I /run/extensions/
Images activated for the running system, which \fBsystemd\-sysext\fR(8) merges.
.SH EXAMPLES
Install an image from a registry, enable it for every boot and merge it now:
.PP
.RS 4
.EX
kairos\-ext install oci://quay.io/example/k3s:v1.30 \-\-enable common \-\-now
.EE
.RE
.PP
Prepare an image root offline, as an image builder does:
.PP
.RS 4
.EX
kairos\-ext \-\-root /mnt/image install ./k3s.raw \-\-enable common
.EE
.RE
.PP
Show what is installed and what is merged, as JSON:
.PP
.RS 4
.EX
kairos\-ext list \-\-json
.EE
.RE
.SH "SEE ALSO"
\fBkairos\-extensionsd\fR(8), \fBorg.kairos.Extensions1\fR(5), \fBsystemd\-sysext\fR(8),
\fBpolkit\fR(8), \fBbusctl\fR(1)
"#;

const KAIROS_EXTENSIONSD_DESCRIPTION: &str = r#".SH DESCRIPTION
\fBkairos\-extensionsd\fR owns \fBorg.kairos.Extensions1\fR on the system bus and manages
systemd system extensions for its clients (\fBkairos\-ext\fR(1), \fBbusctl\fR(1), Cockpit and
other services): it installs images into \fI/var/lib/kairos/extensions\fR, enables them per
boot state, removes them and refreshes the merge.
Reading is open to every caller; each change is authorized by polkit for the caller's bus name.
The interface is described in \fBorg.kairos.Extensions1\fR(5).
.PP
The bus starts the service on demand through \fBkairos\-extensionsd.service\fR; it exits once
\fBidle_exit_sec\fR seconds passed with no call in progress and no job, and on \fBSIGTERM\fR.
Messages go to the journal when it runs under systemd, to standard error otherwise.
.PP
Its subcommands run one\-off tasks instead of the service: boot activation, run by
\fBkairos\-extensions\-boot.service\fR before \fBsystemd\-sysext.service\fR, and the systemd generator.
"#;

const KAIROS_EXTENSIONSD_SECTIONS: &str = r#".SH CONFIGURATION
\fI/etc/kairos/extensions.toml\fR is optional; without it the defaults below apply.
An unknown key or a bad value stops the service with an error that names the key.
.TP
\fBstore_dir\fR (default \fI/var/lib/kairos/extensions\fR)
The image store.
.TP
\fBruntime_dir\fR (default \fI/run/extensions\fR)
Where images are activated for the running system.
.TP
\fBimage_policy\fR (default \fBpermissive\fR)
Which images may be installed and activated: \fBpermissive\fR (any valid image), \fBverity\fR
(verity\-protected images, signed or not), \fBstrict\fR (images signed by a trusted certificate only),
or a systemd image\-policy string.
.TP
\fBrefresh\fR (default \fBauto\fR)
How the merge is refreshed: \fBsystemd\-unit\fR restarts \fBsystemd\-sysext.service\fR, \fBexec\fR runs
\fBsystemd\-sysext refresh\fR, \fBauto\fR picks \fBsystemd\-unit\fR when systemd runs the system.
.TP
\fBauto_update\fR (default \fBcheck\fR)
What \fBkairos\-extensions\-update.timer\fR does: \fBoff\fR (nothing), \fBcheck\fR (check every
extension for updates) or \fBapply\fR (check, then update those with an update).
.TP
\fBauto_update_now\fR (default \fBfalse\fR)
Whether updates the timer applies are merged at once where the extension is merged now.
.TP
\fBinsecure_registries\fR (default none)
Registries, as \fIhost\fR or \fIhost\fR:\fIport\fR, that may be reached over plain HTTP.
.TP
\fBregistry_auth\fR (default none)
A containers\-style \fIauth.json\fR with registry credentials.
.TP
\fBmax_image_size\fR (default \fB8G\fR)
The largest image accepted, as bytes or with a K, M, G or T suffix.
.TP
\fBmax_jobs\fR (default \fB4\fR)
How many installs run at once; up to 64 more wait in line.
.TP
\fBidle_exit_sec\fR (default \fB60\fR)
Seconds without activity after which the service exits; 0 keeps it running.
.TP
\fBtrusted_certificates\fR (default none)
Extra directories of trusted verity signing certificates, besides the \fIverity.d\fR directories.
.TP
\fBcatalogs\fR (default none)
Kairos catalogs (\fIreleases.json\fR): http(s) URLs or absolute paths, searched in order
for \fBcatalog:\fR\fINAME\fR installs; the first that has a name answers for it.
.SH "EXIT STATUS"
0 when the service stopped because it was idle or told to, or when a task succeeded;
1 when the configuration is invalid, the store cannot be opened or the bus name is taken;
2 when the command line cannot be parsed.
The generator always exits 0, so that it never fails a boot.
.SH FILES
.TP
.I /etc/kairos/extensions.toml
The configuration.
.TP
.I /var/lib/kairos/extensions/
The store. \fINAME\fR\fI.raw\fR are the images, \fIactive/\fR, \fIpassive/\fR, \fIrecovery/\fR and
\fIcommon/\fR hold one link per enabled image, \fI.meta/\fR the provenance records and \fI.tmp/\fR
installs in progress.
.TP
.I /run/extensions/
Activation links for the running system.
.TP
.I /run/kairos\-extensions/boot.json
What boot activation linked and what it skipped, and why.
.TP
.I /etc/verity.d/, /run/verity.d/, /usr/local/lib/verity.d/, /usr/lib/verity.d/
Trusted verity signing certificates: PEM (\fI*.crt\fR, \fI*.pem\fR) or DER (\fI*.der\fR).
.SH "SEE ALSO"
\fBkairos\-ext\fR(1), \fBorg.kairos.Extensions1\fR(5), \fBsystemd\-sysext\fR(8), \fBpolkit\fR(8),
\fBsystemd.image\-policy\fR(7)
"#;
