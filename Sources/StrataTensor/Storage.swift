/// The bytes behind one or more tensors.
///
/// Three kinds, all exposing a base pointer and a byte count:
/// - `owned`: a 64-byte aligned heap block freed when the storage dies;
/// - `mapped`: a read-only view into a file mapping; `owner` keeps the mapping alive;
/// - `arena`: a slice of a larger buffer (an arena); `owner` keeps the arena alive.
///
/// Storage is a reference type so views share it without copying.
/// It is `@unchecked Sendable`: Strata's concurrency discipline is that a buffer
/// is written by one task at a time (the forward pass), read by many.
public final class TensorStorage: @unchecked Sendable {
    public enum Kind: Sendable, Equatable { case owned, mapped, arena }

    /// Start of the bytes.
    public let base: UnsafeMutableRawPointer
    /// Number of bytes addressable from `base`.
    public let byteCount: Int
    public let kind: Kind
    /// Keeps a mapping or arena alive while this storage exists.
    public let owner: AnyObject?

    /// Alignment of owned storage, in bytes (one cache line, and AVX-512 width).
    public static let alignment = 64

    /// Size of a transparent huge page on x86-64 Linux.
    public static let hugePage = 2 << 20

    /// Allocates `byteCount` bytes, 64-byte aligned (or `alignment`, e.g. 4096 for O_DIRECT), zero-filled.
    /// `hugePages`: for large buffers, align to 2 MiB and ask for transparent huge pages before the
    /// first touch. An O_DIRECT read into 4 KiB pages is cut into requests of at most
    /// `max_segments` pages and pins every page; into huge pages it needs up to 512 times fewer.
    /// A hint: a kernel may grant none (this project's VM does not), and then nothing changes.
    public init(byteCount: Int, alignment: Int = TensorStorage.alignment, hugePages: Bool = false) {
        precondition(byteCount >= 0, "TensorStorage: negative byte count \(byteCount)")
        let huge = hugePages && byteCount >= TensorStorage.hugePage
        let align = huge ? max(alignment, TensorStorage.hugePage) : alignment
        let n = max(byteCount, align)
        let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: align)
        if huge { FileIO.adviseHugePages(p, count: n / TensorStorage.hugePage * TensorStorage.hugePage) }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        self.base = p
        self.byteCount = byteCount
        self.kind = .owned
        self.owner = nil
    }

    /// Wraps memory owned by `owner` (a file mapping or an arena). Nothing is copied.
    public init(borrowing base: UnsafeMutableRawPointer, byteCount: Int, kind: Kind, owner: AnyObject?) {
        precondition(kind != .owned, "TensorStorage(borrowing:) is for mapped or arena memory")
        self.base = base
        self.byteCount = byteCount
        self.kind = kind
        self.owner = owner
    }

    deinit {
        if kind == .owned { base.deallocate() }
    }
}

/// A bump allocator over one aligned block: tensors carved from it are `arena`
/// slices that share the block. Used to size all forward-pass buffers once.
public final class Arena: @unchecked Sendable {
    public let storage: TensorStorage
    public private(set) var used: Int = 0
    public var capacity: Int { storage.byteCount }

    public init(capacity: Int) {
        storage = TensorStorage(byteCount: capacity)
    }

    /// Carves a zeroed f32 tensor of `shape` (64-byte aligned) from the arena.
    public func tensor(_ shape: [Int], dtype: DType = .f32) -> Tensor {
        let count = shape.reduce(1, *)
        let bytes = count * dtype.byteSize
        let start = (used + TensorStorage.alignment - 1) / TensorStorage.alignment * TensorStorage.alignment
        precondition(start + bytes <= capacity, "Arena: \(bytes) bytes requested, \(capacity - start) left of \(capacity)")
        used = start + bytes
        let s = TensorStorage(borrowing: storage.base + start, byteCount: bytes, kind: .arena, owner: self)
        return Tensor(storage: s, dtype: dtype, shape: shape)
    }
}
