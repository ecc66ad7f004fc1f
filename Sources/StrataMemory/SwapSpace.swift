import Glibc
import StrataTensor

/// Errors of the KV disk tier.
public enum SwapError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The swap file has no free slot for the blocks being swapped out.
    case full(path: String, needed: Int, free: Int, slots: Int)
    /// Something that is not Strata's swap file is at the path (never overwritten).
    case exists(path: String)
    /// Another run holds the swap file.
    case inUse(path: String)
    /// The size limit holds no block.
    case tooSmall(path: String, bytes: Int, slotBytes: Int)
    public var description: String {
        switch self {
        case let .full(p, n, f, s): return "\(p): KV swap space full: \(n) blocks to write, \(f) of \(s) slots free"
        case let .exists(p): return "\(p): a file that is not a Strata KV swap file is there; it is left alone (choose another --kv-disk path)"
        case let .inUse(p): return "\(p): another Strata run is using this KV swap file"
        case let .tooSmall(p, b, s): return "\(p): a KV swap space of \(b) bytes holds no block of \(s) bytes"
        }
    }
}

/// The KV cache's disk tier: a preallocated file of block-sized slots. A slot holds one KV
/// block of every layer (K then V per layer). Creating it reserves the disk (`posix_fallocate`),
/// so "disk full" is found at start, not in the middle of a run; the size limit caps it.
///
/// The file is Strata's alone: created exclusively with a header page naming it (an existing
/// file without that header is never touched), locked while the run uses it (a second run is
/// refused), and removed when the space is released (`close()`, deinit, or a failed start). A
/// stale swap file of a killed run (header present, no lock) is reused.
public final class SwapSpace: @unchecked Sendable {
    public let path: String
    public let slotBytes: Int
    public let slotCount: Int
    let fd: Int32
    private var freeSlots: [Int]
    public private(set) var bytesWritten = 0
    public private(set) var bytesRead = 0

    /// Bytes before the first slot: the header page ("STRATA-KV-SWAP\n").
    static let headerBytes = 4096
    static let magic = Array("STRATA-KV-SWAP\n".utf8)
    private var closed = false

    public init(path: String, bytes: Int, slotBytes: Int) throws {
        guard slotBytes > 0, bytes >= slotBytes else { throw SwapError.tooSmall(path: path, bytes: bytes, slotBytes: max(slotBytes, 0)) }
        self.path = path
        self.slotBytes = slotBytes
        slotCount = bytes / slotBytes
        var fd: Int32
        do {
            fd = try FileIO.createExclusive(path)
        } catch FileError.open(_, let e) where e == EEXIST {
            // only a stale swap file of Strata's (its header, nobody holding it) is taken over
            let existing: Int32
            do { existing = try FileIO.openExistingRegular(path) } catch { throw SwapError.exists(path: path) }
            var head = [UInt8](repeating: 0, count: SwapSpace.magic.count)
            let ok = (try? FileIO.pread(fd: existing, path: path, into: &head, count: head.count, offset: 0)) != nil && head == SwapSpace.magic
            if !ok { FileIO.closeFile(existing); throw SwapError.exists(path: path) }
            fd = existing
        }
        if !FileIO.tryLock(fd) { FileIO.closeFile(fd); throw SwapError.inUse(path: path) }
        self.fd = fd
        do {
            var header = SwapSpace.magic + [UInt8](repeating: 0, count: SwapSpace.headerBytes - SwapSpace.magic.count)
            try FileIO.pwrite(fd: fd, path: path, from: &header, count: header.count, offset: 0)
            try FileIO.preallocate(fd: fd, path: path, bytes: SwapSpace.headerBytes + slotCount * slotBytes)
        } catch {
            FileIO.remove(path)
            FileIO.closeFile(fd)
            throw error
        }
        freeSlots = Array((0..<slotCount).reversed())
    }

    /// Removes the file and closes it (once; deinit does it too).
    public func close() {
        if closed { return }
        closed = true
        FileIO.remove(path)
        FileIO.closeFile(fd)
    }

    deinit { close() }

    public var freeCount: Int { freeSlots.count }

    public func allocate(_ n: Int) throws -> [Int] {
        if n > freeSlots.count { throw SwapError.full(path: path, needed: n, free: freeSlots.count, slots: slotCount) }
        return (0..<n).map { _ in freeSlots.removeLast() }
    }

    public func free(_ slots: [Int]) { freeSlots.append(contentsOf: slots) }

    func write(slot: Int, from p: UnsafeRawPointer) throws {
        try FileIO.pwrite(fd: fd, path: path, from: p, count: slotBytes, offset: SwapSpace.headerBytes + slot * slotBytes)
        bytesWritten += slotBytes
    }

    func read(slot: Int, into p: UnsafeMutableRawPointer) throws {
        try FileIO.pread(fd: fd, path: path, into: p, count: slotBytes, offset: SwapSpace.headerBytes + slot * slotBytes)
        bytesRead += slotBytes
    }
}

/// A sequence whose KV blocks went to disk.
public struct SwappedSequence: Sendable {
    public let slots: [Int]
    let length: Int
    let tokens: [Int32]
    let registered: Int
    let chain: UInt64
}

extension PagedKVCache {
    /// Bytes of one block of every layer, as a swap slot holds it.
    public var swapSlotBytes: Int { PagedKVCache.bytesPerBlock(layers: layers, kvDim: kvDim, blockSize: blockSize, type: type) }

    /// Writes every block of `id` to `swap` and frees them in RAM. On a write error nothing is
    /// freed and the slots taken are given back.
    public func swapOut(_ id: Int, to swap: SwapSpace) throws -> SwappedSequence {
        precondition(swap.slotBytes == swapSlotBytes, "PagedKVCache.swapOut: slots of \(swap.slotBytes) bytes for blocks of \(swapSlotBytes)")
        let s = sequenceState(id)
        let slots = try swap.allocate(s.table.count)
        let buf = TensorStorage(byteCount: swap.slotBytes)
        let blockBytes = blockSize * rowBytes
        do {
            for (b, slot) in zip(s.table, slots) {
                var p = buf.base
                for l in 0..<layers {
                    p.copyMemory(from: k[l].rawPointer + b * blockBytes, byteCount: blockBytes); p += blockBytes
                    p.copyMemory(from: v[l].rawPointer + b * blockBytes, byteCount: blockBytes); p += blockBytes
                }
                try swap.write(slot: slot, from: buf.base)
            }
        } catch {
            swap.free(slots)
            throw error
        }
        free(id)
        return SwappedSequence(slots: slots, length: s.length, tokens: s.tokens, registered: s.registered, chain: s.chain)
    }

    /// Reads a swapped sequence back into fresh blocks as `id`; its disk slots are freed.
    public func swapIn(_ id: Int, from swapped: SwappedSequence, swap: SwapSpace) throws {
        precondition(swap.slotBytes == swapSlotBytes, "PagedKVCache.swapIn: slots of \(swap.slotBytes) bytes for blocks of \(swapSlotBytes)")
        let blocks = try pool.allocate(swapped.slots.count)
        let buf = TensorStorage(byteCount: swap.slotBytes)
        let blockBytes = blockSize * rowBytes
        do {
            for (b, slot) in zip(blocks, swapped.slots) {
                try swap.read(slot: slot, into: buf.base)
                var p = UnsafeRawPointer(buf.base)
                for l in 0..<layers {
                    (k[l].rawPointer + b * blockBytes).copyMemory(from: p, byteCount: blockBytes); p += blockBytes
                    (v[l].rawPointer + b * blockBytes).copyMemory(from: p, byteCount: blockBytes); p += blockBytes
                }
            }
        } catch {
            for b in blocks { pool.free(b) }
            throw error
        }
        swap.free(swapped.slots)
        restore(id, table: blocks, length: swapped.length, tokens: swapped.tokens, registered: 0, chain: 0)
    }
}
