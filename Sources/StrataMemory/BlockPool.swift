/// Errors from the KV block pool.
public enum BlockPoolError: Error, CustomStringConvertible, Equatable, Sendable {
    /// No free block and none evictable: the caller preempts a sequence or waits.
    case outOfBlocks(requested: Int, free: Int, total: Int)
    public var description: String {
        switch self {
        case let .outOfBlocks(r, f, t): return "KV block pool exhausted: \(r) blocks needed, \(f) free of \(t)"
        }
    }
}

/// Identity of a full block's contents for prefix caching: the hash of the blocks before it
/// and its own token ids (compared exactly, so a hash collision cannot share wrong data).
public struct BlockKey: Hashable, Sendable {
    public let parent: UInt64
    public let tokens: [Int32]
    public init(parent: UInt64, tokens: [Int32]) { self.parent = parent; self.tokens = tokens }

    /// FNV-1a over the parent hash and the tokens: the hash the next block chains from.
    public var chainHash: UInt64 { BlockKey.chainHash(parent: parent, tokens: tokens[...]) }

    public static func chainHash(parent: UInt64, tokens: ArraySlice<Int32>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ parent
        h = h &* 0x100_0000_01b3
        for t in tokens {
            h ^= UInt64(UInt32(bitPattern: t))
            h = h &* 0x100_0000_01b3
        }
        return h
    }
}

/// A pool of fixed-size KV blocks shared by many sequences (vLLM's block manager, on the CPU).
///
/// Data structures:
/// - `refCount[b]`: how many sequences' block tables hold block `b`;
/// - `freeList`: blocks with no owner and no cached contents (a stack: recently freed first);
/// - `cached`: full blocks by the chain hash of their content (the parent's hash and their
///   tokens), for prefix caching; per block, `hasKey[b]`, `keyHash[b]`, `keyParent[b]` and its
///   tokens in `keyTokens` (compared exactly on lookup, so a hash collision never reuses a block),
///   all sized at init: registering a block allocates nothing;
/// - `lru`: cached blocks with no owner, least recently used first: they still hold a
///   reusable prefix but leave (lose their key) when the pool needs room.
///
/// Invariants (`checkInvariants`): every block is exactly one of free (in `freeList`, no key,
/// refcount 0), evictable (in `lru`, has a key, refcount 0) or owned (refcount > 0, in neither
/// list); `refCount[b]` equals the number of block-table entries naming `b`; `cached` and
/// the per-block keys are inverse maps.
public final class BlockPool: @unchecked Sendable {
    public let blockCount: Int
    public let blockSize: Int
    private(set) var refCount: [Int32]
    private var freeList: [Int32]
    private var cached: [UInt64: Int32] = [:]
    private var hasKey: [Bool]
    private var keyHash: [UInt64]
    private var keyParent: [UInt64]
    /// `[blockCount, blockSize]` the tokens of each cached block
    private var keyTokens: [Int32]
    /// Evictable cached blocks in LRU order: a linked list threaded through two arrays.
    private var prev: [Int32], next: [Int32]
    private var inLRU: [Bool]
    private var head: Int32 = -1, tail: Int32 = -1
    private var lruCount = 0
    public private(set) var evictions = 0

    public init(blockCount: Int, blockSize: Int) {
        precondition(blockCount > 0 && blockSize > 0, "BlockPool: \(blockCount) blocks of \(blockSize)")
        self.blockCount = blockCount
        self.blockSize = blockSize
        refCount = [Int32](repeating: 0, count: blockCount)
        freeList = (0..<Int32(blockCount)).reversed()
        prev = [Int32](repeating: -1, count: blockCount)
        next = [Int32](repeating: -1, count: blockCount)
        inLRU = [Bool](repeating: false, count: blockCount)
        hasKey = [Bool](repeating: false, count: blockCount)
        keyHash = [UInt64](repeating: 0, count: blockCount)
        keyParent = [UInt64](repeating: 0, count: blockCount)
        keyTokens = [Int32](repeating: 0, count: blockCount * blockSize)
        cached.reserveCapacity(blockCount)
    }

    /// Blocks that `allocate` can hand out now (free plus evictable).
    public var available: Int { freeList.count + lruCount }
    public var freeCount: Int { freeList.count }
    public var evictableCount: Int { lruCount }
    public var cachedCount: Int { cached.count }
    public func refs(_ b: Int) -> Int { Int(refCount[b]) }

    /// Hands out a block owned once: a free one, else the least recently used evictable one
    /// (which forgets its cached contents).
    public func allocate() throws -> Int {
        if let b = freeList.popLast() {
            refCount[Int(b)] = 1
            return Int(b)
        }
        guard head >= 0 else { throw BlockPoolError.outOfBlocks(requested: 1, free: 0, total: blockCount) }
        let b = head
        lruRemove(b)
        if hasKey[Int(b)] { cached.removeValue(forKey: keyHash[Int(b)]); hasKey[Int(b)] = false }
        evictions += 1
        refCount[Int(b)] = 1
        return Int(b)
    }

    /// Allocates `n` blocks or none (throws `outOfBlocks` without taking any).
    public func allocate(_ n: Int) throws -> [Int] {
        if n > available { throw BlockPoolError.outOfBlocks(requested: n, free: available, total: blockCount) }
        return try (0..<n).map { _ in try allocate() }
    }

    /// Adds an owner to an owned block (a forked sequence shares its parent's blocks).
    public func share(_ b: Int) {
        precondition(refCount[b] > 0, "BlockPool.share: block \(b) has no owner")
        refCount[b] += 1
    }

    /// Drops one owner. A block nobody owns becomes evictable if it holds cached contents
    /// (most recently used end), else free.
    public func free(_ b: Int) {
        precondition(refCount[b] > 0, "BlockPool.free: block \(b) is not owned")
        refCount[b] -= 1
        if refCount[b] == 0 {
            if hasKey[b] { lruAppend(Int32(b)) } else { freeList.append(Int32(b)) }
        }
    }

    /// Records that block `b` (full, owned) holds `tokens` after the prefix whose chain hash is
    /// `parent`, so later prompts with the same prefix can reuse it; returns the chain hash the
    /// next block chains from. A block already cached keeps its first contents, and contents
    /// already cached in another block stay there. Allocates nothing.
    @discardableResult
    public func register(_ b: Int, parent: UInt64, tokens: ArraySlice<Int32>) -> UInt64 {
        precondition(refCount[b] > 0, "BlockPool.register: block \(b) is not owned")
        precondition(tokens.count == blockSize, "BlockPool.register: \(tokens.count) tokens for a block of \(blockSize)")
        let h = BlockKey.chainHash(parent: parent, tokens: tokens)
        if hasKey[b] || cached[h] != nil { return h }
        cached[h] = Int32(b)
        hasKey[b] = true
        keyHash[b] = h
        keyParent[b] = parent
        var i = b * blockSize
        for t in tokens { keyTokens[i] = t; i += 1 }
        return h
    }

    /// The cached block holding `tokens` after the prefix `parent`, now with one more owner, and
    /// the chain hash after it; nil when no block holds exactly these contents.
    public func lookup(parent: UInt64, tokens: ArraySlice<Int32>) -> (block: Int, chain: UInt64)? {
        guard tokens.count == blockSize else { return nil }
        let h = BlockKey.chainHash(parent: parent, tokens: tokens)
        guard let b32 = cached[h] else { return nil }
        let b = Int(b32)
        guard keyParent[b] == parent, zip(keyTokens[(b * blockSize)..<((b + 1) * blockSize)], tokens).allSatisfy({ $0 == $1 }) else { return nil }
        if refCount[b] == 0 { lruRemove(b32) }
        refCount[b] += 1
        return (b, h)
    }

    /// Records `key` in block `b` (see `register(_:parent:tokens:)`).
    public func register(_ b: Int, key: BlockKey) { register(b, parent: key.parent, tokens: key.tokens[...]) }

    /// The cached block holding `key`, now with one more owner, or nil.
    public func lookup(_ key: BlockKey) -> Int? { lookup(parent: key.parent, tokens: key.tokens[...])?.block }

    /// Whether `key` is cached (without taking it).
    public func contains(_ key: BlockKey) -> Bool {
        guard let b = cached[key.chainHash].map(Int.init), key.tokens.count == blockSize else { return false }
        return keyParent[b] == key.parent && Array(keyTokens[(b * blockSize)..<((b + 1) * blockSize)]) == key.tokens
    }

    // MARK: LRU list

    private func lruAppend(_ b: Int32) {
        precondition(!inLRU[Int(b)], "BlockPool: block \(b) already evictable")
        prev[Int(b)] = tail; next[Int(b)] = -1
        if tail >= 0 { next[Int(tail)] = b } else { head = b }
        tail = b
        inLRU[Int(b)] = true
        lruCount += 1
    }

    private func lruRemove(_ b: Int32) {
        precondition(inLRU[Int(b)], "BlockPool: block \(b) not evictable")
        let p = prev[Int(b)], n = next[Int(b)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        inLRU[Int(b)] = false
        lruCount -= 1
    }

    /// Checks every invariant against the block tables of all live sequences; returns the
    /// violations (empty when all hold).
    public func checkInvariants(tables: [[Int]]) -> [String] {
        var errors: [String] = []
        var owners = [Int32](repeating: 0, count: blockCount)
        for t in tables { for b in t { owners[b] += 1 } }
        let freeSet = Set(freeList)
        if freeSet.count != freeList.count { errors.append("free list has duplicates") }
        var lruSeen = 0
        var c = head
        while c >= 0 && lruSeen <= blockCount { lruSeen += 1; c = next[Int(c)] }
        if lruSeen != lruCount { errors.append("LRU list length \(lruSeen) != count \(lruCount)") }
        for b in 0..<blockCount {
            let isFree = freeSet.contains(Int32(b)), isLRU = inLRU[b], rc = refCount[b], key: UInt64? = hasKey[b] ? keyHash[b] : nil
            if rc != owners[b] { errors.append("block \(b): refcount \(rc) but \(owners[b]) owners") }
            let states = (isFree ? 1 : 0) + (isLRU ? 1 : 0) + (rc > 0 ? 1 : 0)
            if states != 1 { errors.append("block \(b): free \(isFree) evictable \(isLRU) refcount \(rc)") }
            if isFree && key != nil { errors.append("block \(b): free but cached") }
            if isLRU && key == nil { errors.append("block \(b): evictable without contents") }
            if let k = key, cached[k] != Int32(b) { errors.append("block \(b): key map mismatch") }
        }
        let keyed = hasKey.filter { $0 }.count
        if cached.count != keyed { errors.append("cached \(cached.count) != blocks with contents \(keyed)") }
        return errors
    }
}
