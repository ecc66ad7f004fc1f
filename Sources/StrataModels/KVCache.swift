import Foundation
import StrataFormats
import StrataTensor

/// A contiguous per-sequence KV cache: for each layer, K and V of every position, stored as
/// `type` (`DType.kvTypes`), each kv head's rows together (`[kvHeads, capacity, headDim]`): a
/// decode step reads one long run per head, not a slice of every row.
public final class KVCache: KVStorage, @unchecked Sendable {
    public let layers: Int
    public let capacity: Int
    public let kvDim: Int
    public let headDim: Int
    /// What K and V are stored as.
    public let type: DType
    /// Bytes of one head's values of one position.
    let headBytes: Int
    /// Per layer: `[kvHeads, capacity, headDim]` of `type`.
    public let k: [Tensor]
    /// Per layer: `[kvHeads, capacity, headDim]` of `type`.
    public let v: [Tensor]
    /// Positions filled so far.
    public internal(set) var length: Int = 0
    /// [maxRows * capacity] attention scores
    var scores: Tensor
    /// A prompt chunk's keys and values of one kv head widened to f32 (`[capacity, headDim]`,
    /// made on the first chunk over a cache stored narrower than f32).
    private var wideK = Tensor(zeros: [1]), wideV = Tensor(zeros: [1])
    /// Reused single-entry layout.
    let layout = BatchLayout(capacity: 1)
    /// `[tokens, vocab]` logits of a long all-position forward (grown when needed).
    var longLogits = Tensor(zeros: [1])
    /// This cache's own forward-pass buffers (rows up to its capacity), made on first use, so
    /// forward passes over different caches of one model need no lock.
    private var ownWorkspace: Workspace?

    func workspace(spec: ModelSpec, maxRows: Int, weightDType: DType) -> Workspace {
        if let w = ownWorkspace { return w }
        let w = Workspace(spec: spec, maxRows: min(maxRows, capacity), weightDType: weightDType)
        w.traceNonFinite = traceNonFinite
        ownWorkspace = w
        return w
    }

    /// Passes over this cache trace where the residual stream first goes non-finite (set
    /// before the first pass; `CausalLM.checkFinite` does it for its diagnostic re-run).
    var traceNonFinite = false
    /// The first layer (-1: the embedding) a traced pass over this cache went non-finite at.
    var firstNonFiniteLayer: Int? { ownWorkspace?.firstNonFiniteLayer }

    /// `type` must be one of `DType.kvTypes` whose block divides the head size
    /// (`DType.checkKV`: callers check it and throw before they make a cache).
    /// `stored`: the layers whose K/V this process keeps (a pipeline stage's; nil: all): the
    /// others get no memory and must not be written.
    public init(layers: Int, capacity: Int, kvDim: Int, headDim: Int, type: DType = .f32, stored: Range<Int>? = nil) {
        precondition(layers > 0 && capacity > 0 && kvDim > 0 && headDim > 0 && kvDim % headDim == 0,
                     "KVCache: layers \(layers) capacity \(capacity) kvDim \(kvDim) headDim \(headDim)")
        precondition(DType.kvTypes.contains(type) && headDim % type.blockElements == 0, "KVCache: type \(type) for heads of \(headDim)")
        self.layers = layers
        self.capacity = capacity
        self.kvDim = kvDim
        self.headDim = headDim
        self.type = type
        headBytes = type.bytes(elements: headDim)
        let kept = stored ?? 0..<layers
        let layer = { (l: Int) in Tensor(zeros: kept.contains(l) ? [kvDim / headDim, capacity, headDim] : [0], dtype: type) }
        k = (0..<layers).map(layer)
        v = (0..<layers).map(layer)
        scores = Tensor(zeros: [capacity])
    }

    /// Appends `n` positions of random K/V rows (uniform in [-1, 1), through `write`, so stored as
    /// the cache's type) to every layer: what decode speed at a depth is measured over without
    /// computing a prompt that long first (`strata bench-model --depth`; the speed of a step does
    /// not depend on the values it attends over).
    public func appendRandomPositions(_ n: Int, seed: UInt64 = 1) {
        precondition(n >= 0 && length + n <= capacity, "KVCache.appendRandomPositions: \(n) after \(length) of \(capacity)")
        let chunk = 256
        var rows = [Float](repeating: 0, count: chunk * kvDim)
        var state = seed | 1
        var done = 0
        while done < n {
            let m = min(chunk, n - done)
            for i in 0..<(m * kvDim) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                rows[i] = Float(state >> 40) / Float(1 << 23) - 1
            }
            layout.removeAll()
            layout.append(sequence: 0, rows: m, startPosition: length, logits: .none)
            for l in 0..<layers { write(layer: l, layout: layout, k: rows, ldk: kvDim, v: rows, ldv: kvDim) }
            length += m
            done += m
        }
    }

    /// Forgets positions from `length` on (keeps the first `length`).
    public func truncate(to length: Int) {
        precondition(length >= 0 && length <= self.length, "KVCache.truncate: \(length) of \(self.length)")
        self.length = length
    }

    public func write(layer: Int, layout: BatchLayout, k kRows: UnsafePointer<Float>, ldk: Int, v vRows: UnsafePointer<Float>, ldv: Int) {
        let kp = k[layer].rawPointer, vp = v[layer].rawPointer, heads = kvDim / headDim, headStride = capacity * headBytes
        precondition(k[layer].count > 0, "KVCache.write: layer \(layer) is not stored here")
        for e in layout.entries {
            precondition(e.sequence == 0 && e.endPosition <= capacity, "KVCache: entry \(e) for a single-sequence cache of \(capacity)")
            for r in 0..<e.rowCount {
                let at = (e.startPosition + r) * headBytes
                KVRows.storeHeads(type, kRows + (e.rowStart + r) * ldk, heads: heads, headDim: headDim, kp + at, headStride: headStride)
                KVRows.storeHeads(type, vRows + (e.rowStart + r) * ldv, heads: heads, headDim: headDim, vp + at, headStride: headStride)
            }
        }
    }

    public func attend(layer: Int, layout: BatchLayout, q: UnsafePointer<Float>, ldq: Int, out: UnsafeMutablePointer<Float>, ldo: Int,
                       attention a: AttentionSettings) {
        let heads = a.heads, kvHeads = a.kvHeads, d = a.headDim, scale = a.scale, softcap = a.softcap, window = a.window
        precondition(d == headDim && kvHeads * d == kvDim, "KVCache.attend: \(kvHeads) heads of \(d) in a cache of \(kvDim / headDim) of \(headDim)")
        let kp = k[layer].rawPointer, vp = v[layer].rawPointer, headStride = capacity * headBytes
        a.withSinks { sinks in
        for e in layout.entries {
            let q = q + e.rowStart * ldq, out = out + e.rowStart * ldo, n = e.endPosition
            if e.rowCount == 1 {
                Attention.decode(q: q, k: kp, v: vp, type: type, ld: headBytes, ldv: headBytes, headStride: headStride, out: out, keys: n,
                                 heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, softcap: softcap, window: window, sinks: sinks)
                continue
            }
            // many rows: a row of scores per query row; per kv head, its query heads over its rows
            // (f32: where they lie; else widened first)
            if scores.count < e.rowCount * n { scores = Tensor(zeros: [e.rowCount * n]) }
            if type != .f32 && wideK.count < capacity * d { wideK = Tensor(zeros: [capacity, d]); wideV = Tensor(zeros: [capacity, d]) }
            let group = heads / kvHeads
            for g in 0..<kvHeads {
                var kh = (kp + g * headStride).assumingMemoryBound(to: Float.self), vh = (vp + g * headStride).assumingMemoryBound(to: Float.self)
                if type != .f32 {
                    Kernels.kvGather(type: type, src: kp + g * headStride, ld: headBytes, table: nil, block: 1, blockStride: 0, first: 0, keys: n,
                                     headDim: d, dst: wideK.f32)
                    Kernels.kvGather(type: type, src: vp + g * headStride, ld: headBytes, table: nil, block: 1, blockStride: 0, first: 0, keys: n,
                                     headDim: d, dst: wideV.f32)
                    kh = wideK.f32; vh = wideV.f32
                }
                Attention.causal(q: q + g * group * d, ldq: ldq, k: kh, ldk: d, v: vh, ldv: d, out: out + g * group * d, ldo: ldo,
                                 tokens: e.rowCount, start: e.startPosition, keys: n, heads: group, kvHeads: 1, headDim: d,
                                 scale: scale, scores: scores.f32, softcap: softcap, window: window, sinks: sinks.map { $0 + g * group })
            }
        }
        }
    }
}
