import StrataTensor

/// KV storage in fixed-size blocks from a `BlockPool`, for many sequences at once
/// (PagedAttention on the CPU). Each sequence has a block table; position `p` of a sequence
/// lives in row `p % blockSize` of block `table[p / blockSize]`. Within a block each kv head's
/// rows lie together (`[kvHeads, blockSize, headDim]`), as vLLM lays them out: a decode step
/// reads a run of `blockSize` rows per head, not a slice of every row.
///
/// Protocol of use, per step: `reserve` room for the new tokens of each sequence (allocates
/// blocks, copies a shared partly-filled block first: copy-on-write), run the forward pass
/// (which calls `write` and `attend`), then `commit` the tokens (full blocks become cached
/// prefixes). `startSequence` reuses cached prefix blocks; `fork` shares every block.
public final class PagedKVCache: KVStorage, @unchecked Sendable {
    public let pool: BlockPool
    public let layers: Int
    public let kvDim: Int
    public let headDim: Int
    public var blockSize: Int { pool.blockSize }
    /// Longest sequence the attention scratch is sized for.
    public let maxContext: Int
    /// What K and V are stored as (`DType.kvTypes`).
    public let type: DType
    /// Bytes of one stored K (or V) row of all heads, of one head's row, and of a block of one layer.
    public let rowBytes: Int, headBytes: Int, blockBytes: Int
    /// Per layer: `[blockCount, kvHeads, blockSize, headDim]` of `type`.
    public let k: [Tensor]
    /// Per layer: `[blockCount, kvHeads, blockSize, headDim]` of `type`.
    public let v: [Tensor]

    struct Sequence {
        /// block ids, in position order
        var table: [Int]
        /// positions whose K/V are stored
        var length: Int
        /// token ids of those positions (prefix-cache keys)
        var tokens: [Int32]
        /// leading full blocks already registered in the pool's cache
        var registered: Int
        /// chain hash after the registered blocks
        var chain: UInt64
    }
    private var seqs: [Int: Sequence] = [:]

    /// prefill attention: one kv head's keys/values widened to f32 (`[maxContext, headDim]`) and
    /// scores `[rows * keys]`
    private var gatherK: Tensor, gatherV: Tensor, scores: Tensor
    /// decode attention: this step's one-row entries and their block tables
    private var decodeRows: [BatchLayout.Entry] = []
    private var decodeTables: [[Int]] = []
    public private(set) var copiesOnWrite = 0
    /// When set, every copy-on-write appends its (from, to) blocks here: a pipeline's other
    /// stages repeat them on their layers' blocks (`copyBlock`) before the next pass.
    public var blockCopies: [(from: Int, to: Int)]? = nil
    public private(set) var prefixHitTokens = 0

    /// Bytes of K and V per block across all layers, stored as `type`.
    public static func bytesPerBlock(layers: Int, kvDim: Int, blockSize: Int, type: DType) -> Int {
        2 * layers * blockSize * type.bytes(elements: kvDim)
    }

    /// `type` must be one of `DType.kvTypes` whose block divides the head size
    /// (`DType.checkKV`: callers check it and throw before they make a cache).
    /// `stored`: the layers whose K/V this process keeps (a pipeline stage's; nil: all): the
    /// others get no memory and must not be written.
    public init(layers: Int, kvDim: Int, headDim: Int, blockSize: Int = 16, blockCount: Int, maxContext: Int, type: DType = .f32,
                stored: Range<Int>? = nil) {
        precondition(layers > 0 && kvDim > 0 && headDim > 0 && kvDim % headDim == 0 && blockCount > 0 && maxContext > 0, "PagedKVCache: bad sizes")
        precondition(DType.kvTypes.contains(type) && headDim % type.blockElements == 0, "PagedKVCache: type \(type) for heads of \(headDim)")
        pool = BlockPool(blockCount: blockCount, blockSize: blockSize)
        self.layers = layers
        self.kvDim = kvDim
        self.headDim = headDim
        self.maxContext = maxContext
        self.type = type
        rowBytes = type.bytes(elements: kvDim)
        headBytes = type.bytes(elements: headDim)
        blockBytes = blockSize * rowBytes
        let kept = stored ?? 0..<layers
        let layer = { (l: Int) in Tensor(zeros: kept.contains(l) ? [blockCount, kvDim / headDim, blockSize, headDim] : [0], dtype: type) }
        k = (0..<layers).map(layer)
        v = (0..<layers).map(layer)
        gatherK = Tensor(zeros: [maxContext, headDim])
        gatherV = Tensor(zeros: [maxContext, headDim])
        scores = Tensor(zeros: [maxContext])
    }

    // MARK: sequences

    public func contains(_ id: Int) -> Bool { seqs[id] != nil }
    public func length(of id: Int) -> Int { seqs[id]?.length ?? 0 }
    public func blockTable(of id: Int) -> [Int] { seqs[id]?.table ?? [] }
    /// Sequence `id`'s block ids without copying them (empty for an unknown sequence).
    public func withBlockTable<R>(of id: Int, _ body: (UnsafeBufferPointer<Int>) throws -> R) rethrows -> R {
        guard let i = seqs.index(forKey: id) else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
        return try seqs.values[i].table.withUnsafeBufferPointer(body)
    }
    public var sequenceIDs: [Int] { Array(seqs.keys) }

    /// Starts sequence `id` for `prompt`, reusing cached full blocks of its prefix. At least one
    /// prompt token is always left to compute (its logits are needed). Returns the reused count.
    @discardableResult
    public func startSequence(_ id: Int, prompt: [Int32]) -> Int {
        precondition(seqs[id] == nil, "PagedKVCache: sequence \(id) exists")
        var s = Sequence(table: [], length: 0, tokens: [], registered: 0, chain: 0)
        reserveCapacity(&s)
        let bs = blockSize
        let usable = max(0, (prompt.count - 1) / bs)
        for b in 0..<usable {
            let tokens = prompt[(b * bs)..<((b + 1) * bs)]
            guard let (block, chain) = pool.lookup(parent: s.chain, tokens: tokens) else { break }
            s.table.append(block)
            s.length += bs
            s.tokens += tokens
            s.registered += 1
            s.chain = chain
        }
        prefixHitTokens += s.length
        seqs[id] = s
        return s.length
    }

    /// Blocks `reserve(id, count)` would take from the pool.
    public func blocksNeeded(_ id: Int, newTokens n: Int) -> Int {
        guard let s = seqs[id] else { return (n + blockSize - 1) / blockSize }
        let have = s.table.count * blockSize
        var need = max(0, (s.length + n - have + blockSize - 1) / blockSize)
        if s.length % blockSize != 0, let last = s.table.last, pool.refs(last) > 1 { need += 1 }  // copy-on-write
        return need
    }

    /// Makes room for `n` more positions of `id`: allocates blocks, and copies the partly
    /// filled last block first when another sequence shares it. All or nothing.
    public func reserve(_ id: Int, newTokens n: Int) throws {
        guard seqs[id] != nil else { preconditionFailure("PagedKVCache.reserve: no sequence \(id)") }
        let need = blocksNeeded(id, newTokens: n)
        try withSequence(id) { s in try reserve(&s, newTokens: n, need: need) }
    }

    /// Mutates sequence `id` in place: its arrays are not copied (a `var s = seqs[id]` copy
    /// would share them with the dictionary, and appending a token would then copy the whole
    /// token array every step).
    private func withSequence<R>(_ id: Int, _ body: (inout Sequence) throws -> R) rethrows -> R {
        guard let i = seqs.index(forKey: id) else { preconditionFailure("PagedKVCache: no sequence \(id)") }
        return try body(&seqs.values[i])
    }

    private func reserve(_ s: inout Sequence, newTokens n: Int, need: Int) throws {
        if need > pool.available { throw BlockPoolError.outOfBlocks(requested: need, free: pool.available, total: pool.blockCount) }
        if s.length % blockSize != 0, let last = s.table.last, pool.refs(last) > 1 {
            let fresh = try pool.allocate()
            blockCopies?.append((last, fresh))
            for l in 0..<layers where k[l].count > 0 {
                (k[l].rawPointer + fresh * blockBytes).copyMemory(from: k[l].rawPointer + last * blockBytes, byteCount: blockBytes)
                (v[l].rawPointer + fresh * blockBytes).copyMemory(from: v[l].rawPointer + last * blockBytes, byteCount: blockBytes)
            }
            pool.free(last)
            s.table[s.table.count - 1] = fresh
            copiesOnWrite += 1
        }
        while s.table.count * blockSize < s.length + n { s.table.append(try pool.allocate()) }
    }

    /// Records that the K/V of `tokens` (the next positions of `id`) are written; full blocks
    /// become cached prefixes.
    public func commit(_ id: Int, tokens: UnsafeBufferPointer<Int32>) {
        withSequence(id) { s in
            precondition(s.length + tokens.count <= s.table.count * blockSize, "PagedKVCache.commit: \(tokens.count) tokens without room")
            s.tokens.append(contentsOf: tokens)
            s.length += tokens.count
            registerFullBlocks(&s)
        }
    }

    func sequenceState(_ id: Int) -> (table: [Int], length: Int, tokens: [Int32], registered: Int, chain: UInt64) {
        guard let s = seqs[id] else { preconditionFailure("PagedKVCache: no sequence \(id)") }
        return (s.table, s.length, s.tokens, s.registered, s.chain)
    }

    /// Re-creates sequence `id` over owned `table` (after a swap-in). Swapped-in blocks are not
    /// re-registered as cached prefixes (`registered` 0 restarts the chain from the first block).
    func restore(_ id: Int, table: [Int], length: Int, tokens: [Int32], registered: Int, chain: UInt64) {
        precondition(seqs[id] == nil, "PagedKVCache.restore: sequence \(id) exists")
        var s = Sequence(table: table, length: length, tokens: tokens, registered: registered, chain: chain)
        reserveCapacity(&s)
        registerFullBlocks(&s)  // so the prefix cache and the chain stay consistent
        seqs[id] = s
    }

    /// Registers the sequence's full blocks not yet in the pool's prefix cache.
    private func registerFullBlocks(_ s: inout Sequence) {
        while (s.registered + 1) * blockSize <= s.length {
            let b = s.registered
            s.chain = pool.register(s.table[b], parent: s.chain, tokens: s.tokens[(b * blockSize)..<((b + 1) * blockSize)])
            s.registered += 1
        }
    }

    /// Copies block `from`'s K/V to block `to` in every stored layer (a stage repeating the
    /// first stage's copy-on-write).
    public func copyBlock(from: Int, to: Int) {
        precondition(from >= 0 && from < pool.blockCount && to >= 0 && to < pool.blockCount, "PagedKVCache.copyBlock: \(from) -> \(to)")
        for l in 0..<layers where k[l].count > 0 {
            (k[l].rawPointer + to * blockBytes).copyMemory(from: k[l].rawPointer + from * blockBytes, byteCount: blockBytes)
            (v[l].rawPointer + to * blockBytes).copyMemory(from: v[l].rawPointer + from * blockBytes, byteCount: blockBytes)
        }
    }

    /// Makes sequence `id` use `table` as its blocks, outside the pool's accounting: a later
    /// pipeline stage follows the block tables the first stage's pool chose (its own pool
    /// allocates nothing). `table` holds valid block ids.
    public func mirror(_ id: Int, table: UnsafeBufferPointer<Int>) {
        if let i = seqs.index(forKey: id) {
            seqs.values[i].table.removeAll(keepingCapacity: true)
            seqs.values[i].table.append(contentsOf: table)
            seqs.values[i].length = table.count * blockSize
        } else {
            var s = Sequence(table: Array(table), length: table.count * blockSize, tokens: [], registered: 0, chain: 0)
            s.table.reserveCapacity((maxContext + blockSize - 1) / blockSize + 1)
            seqs[id] = s
        }
    }

    /// Forgets mirrored sequences not in `keep` (their blocks belong to the first stage's pool).
    public func dropMirrors(keeping keep: Set<Int>) {
        for id in Array(seqs.keys) where !keep.contains(id) { seqs.removeValue(forKey: id) }
    }

    /// A new sequence `child` sharing every block of `parent` (parallel sampling).
    public func fork(_ parent: Int, into child: Int) {
        guard let s = seqs[parent] else { preconditionFailure("PagedKVCache.fork: no sequence \(parent)") }
        precondition(seqs[child] == nil, "PagedKVCache.fork: sequence \(child) exists")
        for b in s.table { pool.share(b) }
        var c = Sequence(table: Array(s.table), length: s.length, tokens: Array(s.tokens), registered: s.registered, chain: s.chain)
        reserveCapacity(&c)  // the child's own arrays: its steps do not copy or grow them
        seqs[child] = c
    }

    /// Room for `maxContext` tokens and their blocks, so appending a step's token or block never
    /// reallocates (the forward pass allocates nothing per token).
    private func reserveCapacity(_ s: inout Sequence) {
        s.tokens.reserveCapacity(maxContext)
        s.table.reserveCapacity((maxContext + blockSize - 1) / blockSize + 1)
    }

    /// Frees every block of `id` (cached full blocks stay reusable until evicted).
    public func free(_ id: Int) {
        guard let s = seqs.removeValue(forKey: id) else { return }
        for b in s.table.reversed() { pool.free(b) }
    }

    /// Token slots allocated but not holding a token, over all sequences (each sequence wastes
    /// less than one block: only its last block is partly filled).
    public var wastedSlots: Int { seqs.values.reduce(0) { $0 + $1.table.count * blockSize - $1.length } }

    public func checkInvariants() -> [String] {
        var errors = pool.checkInvariants(tables: seqs.values.map { $0.table })
        for (id, s) in seqs where s.table.count * blockSize - s.length >= blockSize {
            errors.append("sequence \(id): \(s.table.count) blocks for \(s.length) tokens")
        }
        return errors
    }

    // MARK: KVStorage

    /// Byte offset of position `pos`'s row of kv head 0 (head g's: `+ g * blockSize * headBytes`).
    @inline(__always)
    private func offset(_ s: Sequence, _ pos: Int) -> Int { s.table[pos / blockSize] * blockBytes + (pos % blockSize) * headBytes }

    public func write(layer: Int, layout: BatchLayout, k kRows: UnsafePointer<Float>, ldk: Int, v vRows: UnsafePointer<Float>, ldv: Int) {
        let kp = k[layer].rawPointer, vp = v[layer].rawPointer
        precondition(k[layer].count > 0, "PagedKVCache.write: layer \(layer) is not stored here")
        for e in layout.entries {
            guard let s = seqs[e.sequence] else { preconditionFailure("PagedKVCache.write: no sequence \(e.sequence)") }
            precondition(e.endPosition <= s.table.count * blockSize, "PagedKVCache.write: position \(e.endPosition - 1) not reserved")
            let heads = kvDim / headDim, headStride = blockSize * headBytes
            for r in 0..<e.rowCount {
                let at = offset(s, e.startPosition + r)
                KVRows.storeHeads(type, kRows + (e.rowStart + r) * ldk, heads: heads, headDim: headDim, kp + at, headStride: headStride)
                KVRows.storeHeads(type, vRows + (e.rowStart + r) * ldv, heads: heads, headDim: headDim, vp + at, headStride: headStride)
            }
        }
    }

    public func attend(layer: Int, layout: BatchLayout, q: UnsafePointer<Float>, ldq: Int, out: UnsafeMutablePointer<Float>, ldo: Int,
                       attention a: AttentionSettings) {
        let heads = a.heads, kvHeads = a.kvHeads, d = a.headDim, scale = a.scale, softcap = a.softcap, window = a.window
        let kp = k[layer].rawPointer, vp = v[layer].rawPointer
        // decode rows (one query row): the grouped decode kernel over the blocks, (sequence, kv head) pairs in parallel
        var decodeEntries = 0
        for e in layout.entries where e.rowCount == 1 { decodeEntries += 1 }
        if decodeEntries > 0 {
            // reused across layers and steps (capacity kept): the decode path allocates nothing
            decodeRows.removeAll(keepingCapacity: true)
            decodeTables.removeAll(keepingCapacity: true)
            for e in layout.entries where e.rowCount == 1 {
                decodeRows.append(e)
                decodeTables.append(seqs[e.sequence]!.table)
            }
            decodeRows.withUnsafeBufferPointer { entries in
                decodeTables.withUnsafeBufferPointer { tables in
                  a.withSinks { sinks in
                    var job = DecodeAttentionJob(q: q, ldq: ldq, out: out, ldo: ldo, kPool: kp, vPool: vp, type: type, headBytes: headBytes,
                                                 blockBytes: blockBytes, blockSize: blockSize, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale,
                                                 softcap: softcap, window: window, sinks: sinks, entries: entries, tables: tables)
                    withUnsafeMutablePointer(to: &job) { jp in
                        // one chunk per (sequence, kv head): at batch 1 the kv heads still split
                        // over the threads. A C-convention function and a context on the stack:
                        // nothing allocated per step
                        Threads.runChunks(entries.count * kvHeads, context: UnsafeMutableRawPointer(jp)) { ctx, chunk in
                            let j = ctx!.assumingMemoryBound(to: DecodeAttentionJob.self)
                            j.pointee.run(chunk / j.pointee.kvHeads, kvHead: chunk % j.pointee.kvHeads)
                        }
                    }
                  }
                }
            }
            // let go of the sequences' tables now: held until the next step, they would make the
            // next block's append copy the table (the forward pass allocates nothing per token)
            decodeTables.removeAll(keepingCapacity: true)
        }
        // prefill chunks: per kv head, its keys/values widened to f32 through the block table, then
        // BLAS attention of its query heads
        let group = heads / kvHeads
        a.withSinks { sinks in
        for e in layout.entries where e.rowCount > 1 {
            let n = e.endPosition
            precondition(n <= maxContext && d == headDim, "PagedKVCache.attend: \(n) keys beyond maxContext \(maxContext)")
            if scores.count < e.rowCount * n { scores = Tensor(zeros: [e.rowCount * n]) }
            seqs[e.sequence]!.table.withUnsafeBufferPointer { t in
                for g in 0..<kvHeads {
                    let off = g * blockSize * headBytes
                    Kernels.kvGather(type: type, src: kp + off, ld: headBytes, table: t.baseAddress, block: blockSize, blockStride: blockBytes,
                                     first: 0, keys: n, headDim: d, dst: gatherK.f32)
                    Kernels.kvGather(type: type, src: vp + off, ld: headBytes, table: t.baseAddress, block: blockSize, blockStride: blockBytes,
                                     first: 0, keys: n, headDim: d, dst: gatherV.f32)
                    Attention.causal(q: q + e.rowStart * ldq + g * group * d, ldq: ldq, k: gatherK.f32, ldk: d, v: gatherV.f32, ldv: d,
                                     out: out + e.rowStart * ldo + g * group * d, ldo: ldo, tokens: e.rowCount, start: e.startPosition,
                                     keys: n, heads: group, kvHeads: 1, headDim: d, scale: scale, scores: scores.f32,
                                     softcap: softcap, window: window, sinks: sinks.map { $0 + g * group })
                }
            }
        }
        }
    }

    /// What the decode-attention chunks read: this step's one-row entries and their block tables.
    struct DecodeAttentionJob {
        let q: UnsafePointer<Float>, ldq: Int
        let out: UnsafeMutablePointer<Float>, ldo: Int
        let kPool: UnsafeRawPointer, vPool: UnsafeRawPointer
        let type: DType, headBytes: Int, blockBytes: Int
        let blockSize: Int, heads: Int, kvHeads: Int, headDim: Int, scale: Float, softcap: Float, window: Int
        /// one logit per query head (nil: none)
        let sinks: UnsafePointer<Float>?
        let entries: UnsafeBufferPointer<BatchLayout.Entry>
        let tables: UnsafeBufferPointer<[Int]>

        /// Entry `i`'s query heads of kv head `g` over its keys, through its block table (the
        /// query is at position n - 1; a window keeps the last `window` keys).
        func run(_ i: Int, kvHead g: Int) {
            let e = entries[i], n = e.endPosition, group = heads / kvHeads, d = headDim
            let first = window > 0 ? max(0, n - window) : 0, off = g * blockSize * headBytes
            tables[i].withUnsafeBufferPointer { t in
                Kernels.attentionDecode(q: q + e.rowStart * ldq + g * group * d, group: group, headDim: d,
                                        k: kPool + off, v: vPool + off, type: type, ld: headBytes, ldv: headBytes, table: t.baseAddress,
                                        block: blockSize, blockStride: blockBytes, first: first, keys: n, scale: scale, softcap: softcap,
                                        sinks: sinks.map { $0 + g * group }, out: out + e.rowStart * ldo + g * group * d)
            }
        }
    }
}
