import Foundation
import Strata
import StrataMemory
import StrataModels
import StrataTensor

/// Rank 0's model in a pipeline: a pass runs rank 0's layers of `inner`, then the other ranks'
/// (`MPIPipeline`); it returns what the last rank computed (logits or hidden states) in entry
/// order, as a single process would. A pass of many rows goes as up to `size` micro-batches of
/// contiguous rows (an entry cut at a micro-batch's edge continues in the next one, at its later
/// positions), each sent on as soon as rank 0 has run its layers, so rank 1 computes the first
/// while rank 0 computes the second.
final class PipelineModel: CausalLM, @unchecked Sendable {
    let inner: CausalLM
    let layers: Range<Int>
    let pipeline: MPIPipeline
    private var world: MPIWorld { pipeline.world }
    /// `[maxLogitRows, max(vocab, hidden)]`: what a pass returns.
    private let out: Tensor
    private var subs: [BatchLayout] = []
    private var writers: [MessageWriter] = []
    private var pending: [MPIWorld.Request] = []
    private var result: [UInt8] = []
    /// Contiguous caches the other ranks keep a copy of (by id); released ones are told to them.
    private var caches: [(id: Int, cache: WeakCache)] = []
    private var nextCacheID = 1
    private let lock = NSLock()

    final class WeakCache { weak var cache: KVCache?; init(_ c: KVCache) { cache = c } }

    init(inner: CausalLM, layers: Range<Int>, pipeline: MPIPipeline) {
        self.inner = inner
        self.layers = layers
        self.pipeline = pipeline
        let spec = inner.spec
        out = Tensor(zeros: [inner.maxLogitRows * max(spec.vocabSize, spec.hiddenSize)])
        for _ in 0..<pipeline.size {
            subs.append(BatchLayout(capacity: 64))
            writers.append(MessageWriter())
            pending.append(pipeline.world.nullRequest)
        }
    }

    var spec: ModelSpec { inner.spec }
    var maxRows: Int { inner.maxRows }
    var workspaceBytes: Int { inner.workspaceBytes + out.byteCount }
    var kvLayers: Range<Int> { layers }

    func forward(_ tokens: UnsafeBufferPointer<Int32>, layout: BatchLayout, kv: KVStorage) throws -> UnsafeBufferPointer<Float> {
        lock.lock(); defer { lock.unlock() }  // one pass at a time on the wire
        try checkTokens(tokens)
        let rows = layout.totalRows
        precondition(rows == tokens.count && rows <= maxRows, "PipelineModel: \(tokens.count) tokens for \(rows) rows")
        let hidden = spec.hiddenSize
        // what the other ranks need to find this pass's K/V
        let paged = kv as? PagedKVCache
        var kvKind = 1, cacheID = 0, capacity = 0, kvType = DType.f32
        if let paged {
            kvType = paged.type
            if paged.blockCopies == nil { paged.blockCopies = [] }
        } else if let c = kv as? KVCache {
            kvKind = 2
            cacheID = try contiguousID(c)
            capacity = c.capacity
            kvType = c.type
        } else {
            throw PipelineError.notSupported("a pipeline's model runs over a paged or a contiguous KV cache, not \(type(of: kv))")
        }
        let allDecode = layout.entries.allSatisfy { $0.rowCount == 1 }
        let m = max(1, min(pipeline.size, allDecode ? rows : rows / 16))
        for j in 0..<m {
            let lo = rows * j / m, hi = rows * (j + 1) / m
            let sub = subs[j]
            sub.removeAll()
            sub.hiddenStates = layout.hiddenStates
            sub.stageLayers = layers
            for e in layout.entries where e.rowStart < hi && e.rowStart + e.rowCount > lo {
                let a = max(lo, e.rowStart), b = min(hi, e.rowStart + e.rowCount)
                let logits: BatchLayout.Logits = e.logits == .all ? .all : (e.logits == .last && b == e.rowStart + e.rowCount ? .last : .none)
                sub.append(sequence: e.sequence, rows: b - a, startPosition: e.startPosition + (a - e.rowStart), logits: logits)
            }
            let x = try inner.forward(UnsafeBufferPointer(rebasing: tokens[lo..<hi]), layout: sub, kv: kv)
            precondition(x.count == (hi - lo) * hidden, "PipelineModel: stage 0 returned \(x.count) values for \(hi - lo) rows")
            try world.wait(&pending[j], peer: 1)
            var w = MessageWriter()
            swap(&w, &writers[j])  // written in place: its bytes' capacity is kept, not copied
            w.reset()
            w.ints([Kind.pass.rawValue, j, sub.entries.count, hi - lo, layout.hiddenStates ? 1 : 0, kvKind, cacheID, capacity,
                    DType.kvTypes.firstIndex(of: kvType) ?? 0, j == 0 ? paged?.blockCopies?.count ?? 0 : 0])
            for e in sub.entries {
                w.ints([e.sequence, e.rowStart, e.rowCount, e.startPosition, e.logits == .none ? 0 : e.logits == .last ? 1 : 2])
            }
            if j == 0, let copies = paged?.blockCopies {
                for c in copies { w.int(c.from); w.int(c.to) }
                paged?.blockCopies?.removeAll(keepingCapacity: true)
            }
            if let paged {
                for e in sub.entries {
                    paged.withBlockTable(of: e.sequence) { t in
                        w.int(t.count)
                        for b in t { w.int(b) }
                    }
                }
            }
            w.floats(x)
            writers[j] = w
            pending[j] = try writers[j].bytes.withUnsafeBytes { b in
                try world.startSend(b.baseAddress!, count: b.count, to: 1, tag: MPIPipeline.chainTag)
            }
        }
        // the last rank's answers, one per micro-batch, in order
        var filled = 0
        var failure: String? = nil
        for _ in 0..<m {
            let n = try world.receive(from: pipeline.size - 1, tag: MPIPipeline.resultTag, into: &result)
            try result.withUnsafeBytes { raw in
                var r = MessageReader(UnsafeRawBufferPointer(rebasing: raw[0..<n]))
                let kind = r.int(), count = r.int()
                if kind == Kind.error.rawValue {
                    let text = String(decoding: raw[16..<min(n, 16 + max(0, count))], as: UTF8.self)
                    failure = failure ?? text
                    return
                }
                guard kind == Kind.pass.rawValue, count >= 0, filled + count <= out.count, r.left >= 4 * count else {
                    throw PipelineError.notSupported("rank \(pipeline.size - 1) answered with a malformed message (\(n) bytes)")
                }
                out.f32.advanced(by: filled).update(from: r.floats(count), count: count)
                filled += count
            }
        }
        if let failure { throw PipelineError.stageFailed(failure) }
        return UnsafeBufferPointer(start: out.f32, count: filled)
    }

    /// The id the other ranks know `cache` by (a new cache gets the next one); caches gone since
    /// the last pass are released on the other ranks first.
    private func contiguousID(_ cache: KVCache) throws -> Int {
        var id: Int? = nil
        var gone: [Int] = []
        for entry in caches {
            if let c = entry.cache.cache { if c === cache { id = entry.id } } else { gone.append(entry.id) }
        }
        if !gone.isEmpty {
            caches.removeAll { $0.cache.cache == nil }
            for g in gone {
                var w = MessageWriter()
                w.header(kind: .release, id: g)
                try w.bytes.withUnsafeBytes { b in try world.send(b.baseAddress!, count: b.count, to: 1, tag: MPIPipeline.chainTag) }
            }
        }
        if let id { return id }
        let new = nextCacheID
        nextCacheID += 1
        caches.append((new, WeakCache(cache)))
        return new
    }
}
