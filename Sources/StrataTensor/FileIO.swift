import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CStrataSys

/// Every libc call Strata makes goes through this file (open, fstat, mmap, madvise, pread,
/// pwrite, fsync, rename, posix_fadvise, posix_fallocate, getenv, getpid, usleep). Calls that
/// can be interrupted go through one helper, `FileIO.retrying`, which retries on `EINTR`;
/// failures become `FileError`s naming the path; programmer errors trip preconditions. Flags
/// the Glibc module lacks (O_DIRECT) come from the platform headers through `CStrataSys`.
public enum FileError: Error, CustomStringConvertible, Equatable, Sendable {
    case open(path: String, errno: Int32)
    case stat(path: String, errno: Int32)
    case map(path: String, errno: Int32)
    case read(path: String, offset: Int, errno: Int32)
    case write(path: String, offset: Int, errno: Int32)
    /// fsync failed: the bytes written may not be on the disk.
    case sync(path: String, errno: Int32)
    case rename(from: String, to: String, errno: Int32)
    /// The file ended before `offset + count`.
    case unexpectedEOF(path: String, offset: Int, count: Int)
    /// No space left on the device (ENOSPC) or a size limit was reached.
    case diskFull(path: String, requested: Int)
    /// Not a regular file (a FIFO, device or directory), refused before opening it.
    case notRegular(path: String)
    /// A file read whole (config, tokenizer) larger than Strata accepts.
    case tooLarge(path: String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case let .open(p, e): return "\(p): cannot open: \(FileError.message(e))"
        case let .stat(p, e): return "\(p): cannot stat: \(FileError.message(e))"
        case let .map(p, e): return "\(p): cannot mmap: \(FileError.message(e))"
        case let .read(p, o, e): return "\(p): read at offset \(o) failed: \(FileError.message(e))"
        case let .write(p, o, e): return "\(p): write at offset \(o) failed: \(FileError.message(e))"
        case let .sync(p, e): return "\(p): fsync failed: \(FileError.message(e))"
        case let .rename(f, t, e): return "\(f): cannot rename to \(t): \(FileError.message(e))"
        case let .unexpectedEOF(p, o, c): return "\(p): file ends before offset \(o) + \(c) bytes"
        case let .diskFull(p, r): return "\(p): disk full (needed \(r) more bytes)"
        case let .notRegular(p): return "\(p): not a regular file"
        case let .tooLarge(p, n, l): return "\(p): \(n) bytes, more than the \(l) this file may have"
        }
    }

    static func message(_ e: Int32) -> String { String(cString: strerror(e)) }
}

/// Read-only anonymous pages that read as zeros and take no RAM (`mmap(PROT_READ,
/// MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`): the stand-in for tensors another process of
/// a pipeline holds (this one builds the whole model but never runs those layers). A write
/// faults.
///
/// `writable`: pages that take RAM only where written (a stacked tensor of which this process
/// holds some experts: their slices are read in, the rest stay unbacked).
public final class ZeroPages: @unchecked Sendable {
    public let size: Int
    public let base: UnsafeMutableRawPointer

    public init(size: Int, writable: Bool = false) throws {
        let n = max(size, 1)
        let p = mmap(nil, n, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if p == MAP_FAILED || p == nil { throw FileError.map(path: "(\(n) bytes of zero pages)", errno: errno) }
        base = p!
        self.size = n
    }

    deinit { munmap(base, size) }

    public func storage(offset: Int, count: Int) -> TensorStorage {
        precondition(offset >= 0 && count >= 0 && offset + count <= size, "ZeroPages: \(offset)+\(count) outside \(size) bytes")
        return TensorStorage(borrowing: base + offset, byteCount: count, kind: .mapped, owner: self)
    }
}

/// A whole file mapped read-only (`mmap(PROT_READ, MAP_PRIVATE)`). Tensors view
/// into it through `storage(offset:count:)`; the mapping lives as long as any view.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    /// nil for an empty file (mmap of 0 bytes is not allowed).
    public let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        let fd = try FileIO.openRead(path)
        defer { FileIO.closeFile(fd) }
        let size = try FileIO.size(fd: fd, path: path)
        self.path = path
        self.size = size
        if size == 0 { base = nil; return }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil { throw FileError.map(path: path, errno: errno) }
        base = p
        // a SIGBUS in here (the file shrank under the mapping) names the file and exits 74
        strata_sys_register_mapping(p, size, path)
    }

    deinit {
        if let base {
            strata_sys_unregister_mapping(base)
            munmap(base, size)
        }
    }

    /// A storage view of `count` bytes at `offset`. Precondition: inside the file.
    public func storage(offset: Int, count: Int) -> TensorStorage {
        precondition(offset >= 0 && count >= 0 && offset + count <= size, "MappedFile: \(offset)+\(count) outside \(size) bytes of \(path)")
        guard let base else { return TensorStorage(byteCount: 0) }
        return TensorStorage(borrowing: base + offset, byteCount: count, kind: .mapped, owner: self)
    }

    public enum Advice { case willNeed, dontNeed, sequential, random }

    /// `madvise` on the pages covering `offset ..< offset + count` (a hint; errors ignored).
    public func advise(_ advice: Advice, offset: Int, count: Int) {
        guard let base, count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let end = min(size, offset + count)
        let a: Int32
        switch advice {
        case .willNeed: a = MADV_WILLNEED
        case .dontNeed: a = MADV_DONTNEED
        case .sequential: a = MADV_SEQUENTIAL
        case .random: a = MADV_RANDOM
        }
        _ = madvise(base + start, end - start, a)
    }
}

public enum FileIO {
    /// The one retry loop: runs `call` again while it fails with `EINTR`; returns its result
    /// (negative on failure, with `errno` set by the call).
    @inline(__always)
    static func retrying<T: SignedInteger>(_ call: () -> T) -> T {
        while true {
            let r = call()
            if r >= 0 || errno != EINTR { return r }
        }
    }

    /// `O_DIRECT` of this platform (0 where it has none).
    static let oDirect = Int32(strata_sys_o_direct())

    /// Opens `path`; anything but a regular file (a FIFO, device, directory) is refused: the
    /// open is non-blocking (a FIFO with no writer cannot hang it) and the file is checked with
    /// fstat before it is used.
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws -> Int32 {
        let fd = retrying { Glibc.open(path, flags | O_CLOEXEC | O_NONBLOCK, mode) }
        if fd < 0 { throw FileError.open(path: path, errno: errno) }
        var st = stat()
        if fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG {
            Glibc.close(fd)
            throw FileError.notRegular(path: path)
        }
        let fl = fcntl(fd, F_GETFL)
        if fl >= 0 { _ = fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) }
        return fd
    }

    /// The whole of a small file (a config, tokenizer or template), or nil when it does not
    /// exist. Refuses non-regular files and files over `limit` bytes (default 512 MiB).
    public static func readSmallFile(_ path: String, limit: Int = 512 << 20) throws -> Data? {
        let fd: Int32
        do { fd = try open(path, O_RDONLY) } catch FileError.open(_, let e) where e == ENOENT || e == ENOTDIR {
            return nil
        }
        defer { closeFile(fd) }
        let n = try size(fd: fd, path: path)
        if n > limit { throw FileError.tooLarge(path: path, size: n, limit: limit) }
        var data = Data(count: n)
        if n > 0 { try data.withUnsafeMutableBytes { try pread(fd: fd, path: path, into: $0.baseAddress!, count: n, offset: 0) } }
        return data
    }

    public static func openRead(_ path: String) throws -> Int32 { try open(path, O_RDONLY) }

    /// `path` for large reads: through O_DIRECT where the file system allows (`direct`), else
    /// buffered; with its size.
    public static func openForLargeReads(_ path: String) throws -> (fd: Int32, direct: Bool, size: Int) {
        if let d = try openReadDirect(path) { return (d, true, try size(fd: d, path: path)) }
        let fd = try openRead(path)
        return (fd, false, try size(fd: fd, path: path))
    }

    /// `stat(2)` (the Swift name `stat` is the struct's initializer here).
    private static func lstatFollow(_ path: String, _ st: UnsafeMutablePointer<stat>) -> Int32 {
        path.withCString { fstatat(AT_FDCWD, $0, st, 0) }
    }

    /// Throws unless `path` is a regular file (`stat`, which does not open it, so a FIFO cannot
    /// block the caller): missing files give `FileError.open` with ENOENT.
    public static func requireRegularFile(_ path: String) throws {
        var st = stat()
        if lstatFollow(path, &st) != 0 { throw FileError.open(path: path, errno: errno) }
        if (st.st_mode & S_IFMT) != S_IFREG { throw FileError.notRegular(path: path) }
    }

    public static func size(fd: Int32, path: String) throws -> Int {
        var st = stat()
        if fstat(fd, &st) != 0 { throw FileError.stat(path: path, errno: errno) }
        return Int(st.st_size)
    }

    /// Size of the file at `path`.
    public static func size(path: String) throws -> Int {
        let fd = try openRead(path)
        defer { closeFile(fd) }
        return try size(fd: fd, path: path)
    }

    /// Reads exactly `count` bytes at `offset` (retrying short reads and EINTR).
    public static func pread(fd: Int32, path: String, into buffer: UnsafeMutableRawPointer, count: Int, offset: Int) throws {
        var done = 0
        while done < count {
            let n = retrying { Glibc.pread(fd, buffer + done, count - done, off_t(offset + done)) }
            if n > 0 { done += n; continue }
            if n == 0 { throw FileError.unexpectedEOF(path: path, offset: offset, count: count) }
            throw FileError.read(path: path, offset: offset + done, errno: errno)
        }
    }

    /// Reads `count` bytes at `offset` of the file at `path`.
    public static func read(path: String, offset: Int, count: Int) throws -> [UInt8] {
        let fd = try openRead(path)
        defer { closeFile(fd) }
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try pread(fd: fd, path: path, into: $0.baseAddress!, count: count, offset: offset) }
        return out
    }

    /// Opens `path` for reading with `O_DIRECT` (reads bypass the page cache), or nil when the
    /// platform or the file system refuses it (tmpfs); the caller then reads buffered and drops pages.
    public static func openReadDirect(_ path: String) throws -> Int32? {
        if oDirect == 0 { return nil }
        let fd = retrying { Glibc.open(path, O_RDONLY | O_CLOEXEC | oDirect) }
        if fd >= 0 { return fd }
        if errno == EINVAL { return nil }
        throw FileError.open(path: path, errno: errno)
    }

    /// Reads `count` bytes at `offset` (both multiples of 4096, buffer 4096-aligned, for
    /// O_DIRECT); a read that reaches the end of the file (`fileSize`) may come back short.
    public static func preadAligned(fd: Int32, path: String, into buffer: UnsafeMutableRawPointer, count: Int, offset: Int, fileSize: Int) throws {
        var done = 0
        let want = min(count, fileSize - offset)
        while done < want {
            let n = retrying { Glibc.pread(fd, buffer + done, count - done, off_t(offset + done)) }
            if n > 0 { done += n; continue }
            if n == 0 { throw FileError.unexpectedEOF(path: path, offset: offset, count: want) }
            throw FileError.read(path: path, offset: offset + done, errno: errno)
        }
    }

    /// Opens (creating) a file for reading and writing, without truncating.
    public static func openReadWrite(_ path: String) throws -> Int32 { try open(path, O_RDWR | O_CREAT, 0o644) }

    /// An existing regular file for reading and writing, never through a symbolic link (a
    /// dangling link would otherwise have its target created) and never a device or FIFO.
    public static func openExistingRegular(_ path: String) throws -> Int32 {
        let fd = try open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK)
        var st = stat()
        if fstat(fd, &st) != 0 || (st.st_mode & S_IFMT) != S_IFREG { _ = close(fd); throw FileError.notRegular(path: path) }
        return fd
    }

    /// Throws unless writing `path` by write-then-rename replaces nothing but a regular file (or a
    /// symbolic link, which the rename replaces, not its target): a device node, FIFO, socket or
    /// directory named as an output is refused (as root, `--out /dev/null` would replace the node).
    public static func requireReplaceable(_ path: String) throws {
        var st = stat()
        let r = path.withCString { fstatat(AT_FDCWD, $0, &st, AT_SYMLINK_NOFOLLOW) }
        if r != 0 { return }  // absent: created
        let type = st.st_mode & S_IFMT
        if type != S_IFREG && type != S_IFLNK { throw FileError.notRegular(path: path) }
    }

    /// Writes `data` to `path` whole or not at all: `path.partial` (never through a link),
    /// synced, renamed over `path`; on failure the partial file is removed.
    public static func writeAtomically(_ path: String, _ data: Data) throws {
        try requireReplaceable(path)
        let partial = path + ".partial"
        unlink(partial)
        let fd = try open(partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644)
        do {
            try data.withUnsafeBytes { buf in
                if buf.count > 0 { try pwrite(fd: fd, path: partial, from: buf.baseAddress!, count: buf.count, offset: 0) }
            }
            try sync(fd: fd, path: partial)
            _ = close(fd)
            try rename(partial, to: path)
        } catch {
            _ = close(fd)
            unlink(partial)
            throw error
        }
    }

    /// Creates `path`, failing with EEXIST when something is already there.
    public static func createExclusive(_ path: String) throws -> Int32 { try open(path, O_RDWR | O_CREAT | O_EXCL, 0o600) }

    /// An exclusive advisory lock on `fd` without waiting: false when another process holds one.
    public static func tryLock(_ fd: Int32) -> Bool { flock(fd, LOCK_EX | LOCK_NB) == 0 }

    /// Removes `path` (nothing when it is already gone).
    public static func remove(_ path: String) { _ = unlink(path) }

    /// Reserves `bytes` of disk for the file (`posix_fallocate`): ENOSPC becomes `diskFull`.
    public static func preallocate(fd: Int32, path: String, bytes: Int) throws {
        var r: Int32
        repeat { r = posix_fallocate(fd, 0, off_t(bytes)) } while r == EINTR  // returns the error, errno untouched
        if r == ENOSPC || r == EFBIG || r == EDQUOT { throw FileError.diskFull(path: path, requested: bytes) }
        if r != 0 && r != EOPNOTSUPP && r != EINVAL { throw FileError.write(path: path, offset: 0, errno: r) }
    }

    /// Creates (truncating) a file for writing.
    public static func createWrite(_ path: String) throws -> Int32 { try open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o644) }

    /// Writes all `count` bytes at `offset`; ENOSPC becomes `FileError.diskFull`.
    public static func pwrite(fd: Int32, path: String, from buffer: UnsafeRawPointer, count: Int, offset: Int) throws {
        var done = 0
        while done < count {
            let n = retrying { Glibc.pwrite(fd, buffer + done, count - done, off_t(offset + done)) }
            if n > 0 { done += n; continue }
            if n < 0 && (errno == ENOSPC || errno == EFBIG || errno == EDQUOT) {
                throw FileError.diskFull(path: path, requested: count - done)
            }
            throw FileError.write(path: path, offset: offset + done, errno: n < 0 ? errno : EIO)
        }
    }

    /// Flushes the file's written bytes to the disk (`fsync`); a failure means they may be lost.
    public static func sync(fd: Int32, path: String) throws {
        if retrying({ fsync(fd) }) != 0 { throw FileError.sync(path: path, errno: errno) }
    }

    /// Renames `from` over `to` (atomic within a file system).
    public static func rename(_ from: String, to: String) throws {
        if Glibc.rename(from, to) != 0 { throw FileError.rename(from: from, to: to, errno: errno) }
    }

    public static func closeFile(_ fd: Int32) { _ = close(fd) }

    /// Drops the file's pages from the page cache (`posix_fadvise(DONTNEED)`), a hint.
    public static func dropCache(fd: Int32, offset: Int = 0, count: Int = 0) {
        _ = posix_fadvise(fd, off_t(offset), off_t(count), POSIX_FADV_DONTNEED)
    }

    /// Asks for transparent huge pages over `[p, p + count)` (`madvise(MADV_HUGEPAGE)`), a hint.
    public static func adviseHugePages(_ p: UnsafeMutableRawPointer, count: Int) {
        if count > 0 { _ = madvise(p, count, MADV_HUGEPAGE) }
    }

    /// The environment variable `name`, or nil.
    public static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    /// This process's id.
    public static var processID: Int { Int(getpid()) }

    /// Sleeps the calling thread.
    public static func sleep(microseconds: Int) { _ = usleep(useconds_t(max(0, microseconds))) }
}
