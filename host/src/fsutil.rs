//! Opening files in a directory that an attacker may write (the data
//! directory): never follow a planted symlink, never block on a planted FIFO
//! or device, never read an unbounded amount.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// Open `path` with `opts`, refusing anything but a regular file. With
/// `follow` false, a symlink at `path` itself is refused too (`O_NOFOLLOW`);
/// the open never blocks (`O_NONBLOCK`: a FIFO without a writer would).
pub fn open_regular(path: &Path, opts: &mut OpenOptions, follow: bool) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = libc::O_NONBLOCK;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        opts.custom_flags(flags);
    }
    #[cfg(not(unix))]
    let _ = follow;
    let file = opts.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Read a whole regular file of at most `limit` bytes (see [`open_regular`]).
pub fn read_bounded(path: &Path, limit: u64, follow: bool) -> io::Result<Vec<u8>> {
    let file = open_regular(path, OpenOptions::new().read(true), follow)?;
    if file.metadata()?.len() > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large"));
    }
    Ok(out)
}

/// Create `path`, which must not exist (not even as a dangling symlink), for
/// writing (`O_CREAT|O_EXCL|O_NOFOLLOW`), with `mode` on Unix.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn symlinks_fifos_devices_and_big_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(read_bounded(&link, 100, false).is_err());
        assert_eq!(read_bounded(&link, 100, true).unwrap(), b"secret");
        assert!(read_bounded(&target, 3, true).is_err());
        assert!(read_bounded(Path::new("/dev/zero"), 100, true).is_err());
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // Would block forever without O_NONBLOCK.
        assert!(read_bounded(&fifo, 100, true).is_err());
        assert!(open_regular(&fifo, OpenOptions::new().write(true), false).is_err());
        // create_new never writes through a planted symlink.
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        assert!(create_new(&planted, 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
    }
}
