// SPDX-License-Identifier: GPL-2.0-or-later

// Package volume keeps Qubes VM images in the file-reflink layout and moves
// them through their lifecycle: create, start, stop (commit), revert,
// resize, import, export and remove.
//
// Nouns, for a volume whose vid is appvms/work/private in a pool directory:
//
//   - clean image: appvms/work/private.img, the committed state.
//   - dirty image: private-dirty.img, the file attached to the running VM.
//   - precache: private-precache.img, a reflink of the clean image with the
//     same mtime, renamed to the dirty image at start so a start costs a
//     rename instead of a clone.
//   - import image: private-import.img, the target of a pending import.
//   - revision: private.img.N@YYYY-MM-DDTHH:MM:SSZ, an earlier clean image;
//     N increases by one per revision, the time is the clean image's mtime
//     when it was demoted. A commit hardlinks the clean image to the new
//     revision and renames the dirty image over the clean one, so the
//     revision is the old image's inode, and costs no copy. A revision id
//     is a decimal number without leading zero of at most 19 digits, so it
//     fits a uint64; a file that file-reflink's revision glob matches with
//     any other number is foreign: not listed, pruned or reverted to, but
//     removed with the volume. A commit after revision 9999999999999999999
//     is refused.
//   - temp file: <name>~<random>, a file being written before it is renamed
//     into place; left-overs are removed at start and create.
//
// Every file is opened beneath the pool directory through an fsroot.Root
// (openat2 with RESOLVE_BENEATH), so a name or a planted symlink can never
// reach outside it, and every file that
// becomes visible does so by write, fsync, rename, fsync of the directory:
// a crash leaves either the old state or the new one.
//
// Other packages get no path to open. A volume's files reach them as File
// values (Store.Files, Store.EachFile, Locked, the hooks), which only this
// package makes and which know their volume and kind, and they hand one
// back to be opened: Store.Open to read, Locked.Open under the volume's
// lock to rewrite extents. Store.Path gives a File's absolute path for
// messages only.
//
// A commit (stop, import end, clone) first checks everything that could
// refuse it: the image it commits is a regular file, and every other
// image name of the volume a regular file or nothing. Only then does it
// save the revision and rename; a failure up to the rename removes the
// new revision again, and old revisions are pruned only after the rename.
// A failed commit therefore changes no file, and a commit killed between
// its link and its rename leaves the newest revision on the clean image's
// inode, which the next commit or revert takes as already saved.
//
// A hard link planted in the pool could reach a file outside it on the
// same filesystem, which the beneath-root open does not see. The images
// written in place (dirty, precache, import) must therefore have one link;
// a clean image or a revision may have more, as a running snapshot's
// <vol>.img is a hard link of its source's clean image and a killed
// commit leaves a revision on the clean image's inode, but before the
// optimizer rewrites one, or a start with snapshots disabled hands it to
// the VM (whose dirty image it then is), every other link must be a clean
// image or revision of the pool. Anything else is refused as invalid_name
// and nothing is changed.
//
// Operations on one volume run one at a time. Those on volumes of one
// directory run concurrently, but the directory is removed (by the
// removal that leaves it empty) only once none of them runs, so removing
// a VM's volumes all at once, as qubesd does, is safe, and so is a
// second removal.
//
// The package knows files and reflinks only. It calls Hooks.Committed after
// a commit lands so that the pool can schedule background work on the new
// data; it knows nothing of sockets, pools or optimizers.
package volume
