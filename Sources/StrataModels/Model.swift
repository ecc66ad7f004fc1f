import Foundation
import StrataFormats
import StrataTensor

/// The shape of a decoder-only transformer, as the planner and the engine see it.
public struct ModelSpec: Sendable, Codable, Equatable {
    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var maxPositions: Int
    public var tiedEmbeddings: Bool
    public var bosTokenIDs: [Int]
    public var eosTokenIDs: [Int]
    /// Columns of the forward pass's query buffer: heads * headDim, or GPT-2's fused q|k|v (3 * hidden).
    public var queryBufferWidth: Int

    /// Width of one token's K (or V) row in one layer: kvHeads * headDim.
    public var kvDim: Int { kvHeads * headDim }
    /// Bytes of K and V for one token across all layers, stored as `type`.
    public func kvBytesPerToken(_ type: DType) -> Int { 2 * layers * type.bytes(elements: kvDim) }
}

extension ModelSpec {
    /// Checks the shape read from `file` (config.json or a GGUF's metadata) against what a
    /// machine can hold, so no size computed from it can overflow or ask for petabytes: a
    /// typed error names the field (HF's name).
    public func validate(file: String) throws {
        func check(_ v: Int, _ range: ClosedRange<Int>, _ field: String) throws {
            if !range.contains(v) {
                throw ConfigError.invalidValue(file: file, field: field, reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(v)")
            }
        }
        try check(vocabSize, 1...(1 << 24), "vocab_size")
        try check(hiddenSize, 1...(1 << 17), "hidden_size")
        try check(intermediateSize, 1...(1 << 20), "intermediate_size")
        try check(layers, 1...4096, "num_hidden_layers")
        try check(heads, 1...4096, "num_attention_heads")
        try check(kvHeads, 1...heads, "num_key_value_heads")
        try check(headDim, 1...(1 << 14), "head_dim")
        try check(maxPositions, 1...(1 << 24), "max_position_embeddings")
        try check(queryBufferWidth, 1...(1 << 20), "num_attention_heads x head_dim")
        if heads % kvHeads != 0 {
            throw ConfigError.invalidValue(file: file, field: "num_key_value_heads", reason: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
    }

    /// What is odd but runs (transformers runs it too): BOS/EOS ids outside the vocabulary (tiny
    /// test checkpoints carry GPT-2's 50256 over a few hundred tokens): such an EOS never comes.
    public func warnings(file: String) -> [String] {
        (bosTokenIDs + eosTokenIDs).filter { $0 < 0 || $0 >= vocabSize }.map {
            "\(file): bos_token_id/eos_token_id \($0) is outside the vocabulary (0..<\(vocabSize)); it is never generated"
        }
    }

    /// Bytes of the forward pass's buffers for this shape (what `CausalLM.workspaceBytes`
    /// allocates), from the spec alone, so a planner can count them without weights.
    public func workspaceBytes(maxRows: Int = 512, weightDType: DType) -> Int {
        Workspace.bytes(spec: self, maxRows: maxRows, weightDType: weightDType)
    }
}

/// Where a forward pass first went non-finite.
public enum NonFinitePlace: Equatable, Sendable, CustomStringConvertible {
    /// the token embedding (and, for GPT-2, the learned positions)
    case embedding
    /// the residual stream after this layer (0-based) of `of`
    case layer(Int, of: Int)
    /// every layer finite: the final norm or the output head
    case head

    public var description: String {
        switch self {
        case .embedding: return "in the token embedding"
        case let .layer(l, n): return "after layer \(l) (0-based, of \(n))"
        case .head: return "in the final norm or output head (every layer's output was finite)"
        }
    }
}

/// Errors running a model on input.
public enum ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    case tokenOutOfRange(token: Int, vocabSize: Int)
    /// The forward pass produced NaN or infinite logits (the weights or the config, e.g. a
    /// negative norm epsilon, make the arithmetic blow up). `where` names the first place the
    /// residual stream went non-finite when a traced re-run found it (`CausalLM.checkFinite`).
    case nonFiniteLogits(position: Int, count: Int, where: NonFinitePlace? = nil)
    case contextFull(needed: Int, capacity: Int)
    case emptyInput

    public var description: String {
        switch self {
        case let .tokenOutOfRange(t, v): return "token id \(t) outside the vocabulary (0..<\(v))"
        case let .nonFiniteLogits(p, n, place):
            let at = place.map { "; first non-finite \($0)" } ?? ""
            return "the model's logits at position \(p) are not finite (\(n) NaN or infinite values\(at)): its weights or config make the arithmetic blow up"
        case let .contextFull(n, c): return "sequence needs \(n) positions but the cache/model holds \(c)"
        case .emptyInput: return "no input tokens"
        }
    }
}

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
    public init(layers: Int, capacity: Int, kvDim: Int, headDim: Int, type: DType = .f32) {
        precondition(layers > 0 && capacity > 0 && kvDim > 0 && headDim > 0 && kvDim % headDim == 0,
                     "KVCache: layers \(layers) capacity \(capacity) kvDim \(kvDim) headDim \(headDim)")
        precondition(DType.kvTypes.contains(type) && headDim % type.blockElements == 0, "KVCache: type \(type) for heads of \(headDim)")
        self.layers = layers
        self.capacity = capacity
        self.kvDim = kvDim
        self.headDim = headDim
        self.type = type
        headBytes = type.bytes(elements: headDim)
        k = (0..<layers).map { _ in Tensor(zeros: [kvDim / headDim, capacity, headDim], dtype: type) }
        v = (0..<layers).map { _ in Tensor(zeros: [kvDim / headDim, capacity, headDim], dtype: type) }
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
                       heads: Int, kvHeads: Int, headDim d: Int, scale: Float, softcap: Float, window: Int) {
        precondition(d == headDim && kvHeads * d == kvDim, "KVCache.attend: \(kvHeads) heads of \(d) in a cache of \(kvDim / headDim) of \(headDim)")
        let kp = k[layer].rawPointer, vp = v[layer].rawPointer, headStride = capacity * headBytes
        for e in layout.entries {
            let q = q + e.rowStart * ldq, out = out + e.rowStart * ldo, n = e.endPosition
            if e.rowCount == 1 {
                Attention.decode(q: q, k: kp, v: vp, type: type, ld: headBytes, ldv: headBytes, headStride: headStride, out: out, keys: n,
                                 heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, softcap: softcap, window: window)
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
                                 scale: scale, scores: scores.f32, softcap: softcap, window: window)
            }
        }
    }
}

/// A causal language model ready to run.
public protocol CausalLM: AnyObject, Sendable {
    var spec: ModelSpec { get }
    /// Most rows one `forward(_:layout:kv:)` takes (longer prompts go in chunks).
    var maxRows: Int { get }
    /// Bytes of the forward pass's buffers (activations, logits, conversion scratch).
    var workspaceBytes: Int { get }
    /// Runs the rows of `layout` (`tokens[r]` is row r), stores their K/V in `kv`, and returns
    /// logits `[layout.logitRows, vocab]` in entry order. The returned buffer lives in the
    /// model's workspace: valid until the next call. Callers size `kv` for the positions.
    func forward(_ tokens: UnsafeBufferPointer<Int32>, layout: BatchLayout, kv: KVStorage) throws -> UnsafeBufferPointer<Float>
}

extension CausalLM {
    /// A contiguous cache for up to `capacity` positions (at most `spec.maxPositions`) in f32.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: spec.layers, capacity: min(capacity, spec.maxPositions), kvDim: spec.kvDim, headDim: spec.headDim)
    }

    /// A contiguous cache storing K/V as `type`; throws when the type cannot hold this model's
    /// heads (q8_0 needs a head size that is a multiple of 32).
    public func makeCache(capacity: Int, type: DType) throws -> KVCache {
        try type.checkKV(headDim: spec.headDim)
        return KVCache(layers: spec.layers, capacity: min(capacity, spec.maxPositions), kvDim: spec.kvDim, headDim: spec.headDim, type: type)
    }

    /// Runs `tokens` at positions `cache.length ..< cache.length + tokens.count` of a single
    /// sequence, appends their K/V to `cache`, and returns logits `[rows, vocab]`: every position
    /// when `allLogits`, else only the last. Long inputs run in chunks of `maxRows`; the logits
    /// of a long all-position call are kept in the cache's `longLogits` (valid while it lives).
    public func forward(_ tokens: UnsafeBufferPointer<Int32>, cache: KVCache, allLogits: Bool) throws -> UnsafeBufferPointer<Float> {
        if tokens.isEmpty { throw ModelError.emptyInput }
        try checkTokens(tokens)
        let needed = cache.length + tokens.count
        if needed > cache.capacity { throw ModelError.contextFull(needed: needed, capacity: cache.capacity) }
        let v = spec.vocabSize
        var done = 0
        var last = UnsafeBufferPointer<Float>(start: nil, count: 0)
        let chunk = allLogits ? min(maxRows, Workspace.maxLogitRows) : maxRows
        let chunked = allLogits && tokens.count > chunk
        if chunked && cache.longLogits.count < tokens.count * v { cache.longLogits = Tensor(zeros: [tokens.count, v]) }
        while done < tokens.count {
            let r = min(chunk, tokens.count - done)
            cache.layout.removeAll()
            let isLast = done + r == tokens.count
            cache.layout.append(sequence: 0, rows: r, startPosition: cache.length, logits: allLogits ? .all : (isLast ? .last : .none))
            last = try forward(UnsafeBufferPointer(rebasing: tokens[done..<(done + r)]), layout: cache.layout, kv: cache)
            cache.length += r
            if chunked { (cache.longLogits.f32 + done * v).update(from: last.baseAddress!, count: last.count) }
            done += r
        }
        return chunked ? UnsafeBufferPointer(start: cache.longLogits.f32, count: tokens.count * v) : last
    }

    /// Convenience: logits for all positions of `tokens` from an empty cache, `[T][vocab]`.
    public func logits(_ tokens: [Int32]) throws -> [[Float]] {
        let cache = makeCache(capacity: tokens.count)
        let out = try tokens.withUnsafeBufferPointer { try forward($0, cache: cache, allLogits: true) }
        let v = spec.vocabSize
        return (0..<tokens.count).map { Array(out[($0 * v)..<($0 * v + v)]) }
    }

    /// Throws when a token id is outside the vocabulary (ids come from users and files).
    /// Token ids as given (from users, files, requests): each in 0..<vocab, checked before any
    /// narrowing to Int32 (which would wrap 4294967301 to 5 in an unchecked build).
    public func checkTokens(_ ids: [Int]) throws {
        for t in ids where t < 0 || t >= spec.vocabSize {
            throw ModelError.tokenOutOfRange(token: t, vocabSize: spec.vocabSize)
        }
    }

    public func checkTokens(_ tokens: UnsafeBufferPointer<Int32>) throws {
        for t in tokens where t < 0 || Int(t) >= spec.vocabSize {
            throw ModelError.tokenOutOfRange(token: Int(t), vocabSize: spec.vocabSize)
        }
    }
}

/// A weight matrix used by a linear layer, in one of two layouts:
/// `.outIn` `[out, in]` (HF `nn.Linear`: y = x W^T) or `.inOut` `[in, out]` (GPT-2's `Conv1D`: y = x W).
/// f16/bf16 weights stay views into the checkpoint and are converted into the caller's scratch
/// at use, so the model is never held twice.
struct WeightMatrix {
    enum Layout { case outIn, inOut }
    let tensor: Tensor
    let layout: Layout
    let inFeatures: Int
    let outFeatures: Int
    /// `[out]` f32 copy, if the layer has a bias.
    let bias: Tensor?

    init(_ tensor: Tensor, layout: Layout = .outIn, bias: Tensor? = nil) {
        precondition(tensor.rank == 2 && tensor.isContiguous, "WeightMatrix: \(tensor.shape)")
        self.tensor = tensor
        self.layout = layout
        (outFeatures, inFeatures) = layout == .outIn ? (tensor.shape[0], tensor.shape[1]) : (tensor.shape[1], tensor.shape[0])
        self.bias = bias.map { $0.contiguousF32() }
        if let b = self.bias { precondition(b.count == outFeatures, "WeightMatrix: bias \(b.shape) for \(outFeatures) outputs") }
    }

    var elementCount: Int { inFeatures * outFeatures }

    /// y[rows, out] (+)= x[rows, in] * W (+ bias). `scratch` holds >= elementCount floats when the weight is not f32.
    func apply(_ x: UnsafePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>, ldx: Int? = nil, ldy: Int? = nil,
               accumulate: Bool = false, scratch: UnsafeMutablePointer<Float>?) {
        let bp = bias.map { UnsafePointer($0.f32) }
        let lx = ldx ?? inFeatures, ly = ldy ?? outFeatures
        if bf16Products(rows: rows), let scratch, Kernels.gemmBF16(weight: tensor.rawPointer, dtype: tensor.dtype, outFeatures: outFeatures, inFeatures: inFeatures,
                                                  x: x, rows: rows, ldx: lx, y: y, ldy: ly, accumulate: accumulate,
                                                  scratch: scratch, scratchElements: WeightMatrix.convertElements) {
            // a prefill in a fast (non-exact) mode, quantized or 16-bit weights: bf16 products (AVX-512 BF16)
        } else if layout == .outIn && rows <= Kernels.maxRows(dtype: tensor.dtype) {
            // few rows (a decode step): the kernel reads each weight byte once for all rows and
            // widens 16-bit weights in registers, no conversion pass
            Kernels.linear(weight: tensor.rawPointer, dtype: tensor.dtype, outFeatures: outFeatures, inFeatures: inFeatures,
                           x: x, rows: rows, ldx: lx, y: y, ldy: ly, accumulate: accumulate)
        } else if tensor.dtype == .f32 {
            let w = UnsafePointer(tensor.f32)
            switch layout {
            case .outIn:
                BLAS.linear(x: x, rows: rows, inFeatures: inFeatures, ldx: ldx, weight: w, outFeatures: outFeatures,
                            bias: bp, y: y, ldy: ldy, accumulate: accumulate)
                return
            case .inOut:
                let beta: Float = accumulate ? 1 : 0
                if rows == 1 {
                    BLAS.sgemv(trans: true, m: inFeatures, n: outFeatures, a: w, lda: outFeatures, x: x, beta: beta, y: y)
                } else {
                    BLAS.sgemm(m: rows, n: outFeatures, k: inFeatures, a: x, lda: lx, b: w, ldb: outFeatures, beta: beta, c: y, ldc: ly)
                }
            }
        } else {
            // 16-bit weights, many rows: convert a band of the weight at a time into the scratch
            // (at most `WeightMatrix.convertElements` floats) and multiply that band
            guard let scratch else { preconditionFailure("WeightMatrix: \(tensor.dtype) weight needs conversion scratch") }
            let rowBytes = tensor.rowBytes
            switch layout {
            case .outIn:
                let band = max(1, min(outFeatures, WeightMatrix.convertElements / inFeatures))
                var o = 0
                while o < outFeatures {
                    let n = min(band, outFeatures - o)
                    HalfConversion.toF32(tensor.rawPointer + o * rowBytes, dtype: tensor.dtype, scratch, count: n * inFeatures)
                    BLAS.linear(x: x, rows: rows, inFeatures: inFeatures, ldx: lx, weight: scratch, outFeatures: n,
                                y: y + o, ldy: ly, accumulate: accumulate)
                    o += n
                }
            case .inOut:
                let band = max(1, min(inFeatures, WeightMatrix.convertElements / outFeatures))
                var i = 0
                while i < inFeatures {
                    let n = min(band, inFeatures - i)
                    HalfConversion.toF32(tensor.rawPointer + i * rowBytes, dtype: tensor.dtype, scratch, count: n * outFeatures)
                    let beta: Float = (accumulate || i > 0) ? 1 : 0
                    BLAS.sgemm(m: rows, n: outFeatures, k: n, a: x + i, lda: lx, b: scratch, ldb: outFeatures, beta: beta, c: y, ldc: ly)
                    i += n
                }
            }
        }
        addBias(y, rows: rows, ldy: ly)
    }

    private func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, ldy ly: Int) {
        guard let bp = bias.map({ UnsafePointer($0.f32) }) else { return }
        for r in 0..<rows { let row = y + r * ly; for j in 0..<outFeatures { row[j] += bp[j] } }
    }

    /// Whether `apply` of `rows` rows tries the bf16-product GEMM first (a fast mode's prefill or
    /// large batch over 16-bit or quantized weights).
    private func bf16Products(rows: Int) -> Bool {
        layout == .outIn && rows >= Kernels.bf16ProductsMinRows(dtype: tensor.dtype) && Kernels.prefillUsesBF16Products(dtype: tensor.dtype)
    }

    /// Whether `apply` of `rows` rows takes the few-row kernel (`Kernels.linear`).
    private func fewRowKernel(rows: Int) -> Bool {
        layout == .outIn && rows <= Kernels.maxRows(dtype: tensor.dtype) && !bf16Products(rows: rows)
    }

    /// `a.1 = x a.0`, `b.1 = x b.0` (and c), y rows `outFeatures` apart, x rows `inFeatures`: the
    /// matrices that share an input (q, k, v; gate, up). Where each would take the few-row kernel,
    /// one job on the pool for all of them (`Kernels.linearGroup`: no wait at each matrix's end,
    /// 8-bit activations quantized once); else one `apply` each.
    static func applyGroup(_ x: UnsafePointer<Float>, rows: Int, _ a: (WeightMatrix, UnsafeMutablePointer<Float>),
                           _ b: (WeightMatrix, UnsafeMutablePointer<Float>), _ c: (WeightMatrix, UnsafeMutablePointer<Float>)? = nil,
                           scratch: UnsafeMutablePointer<Float>?) {
        let k = a.0.inFeatures
        guard a.0.fewRowKernel(rows: rows), b.0.fewRowKernel(rows: rows), b.0.inFeatures == k,
              c.map({ $0.0.fewRowKernel(rows: rows) && $0.0.inFeatures == k }) ?? true else {
            a.0.apply(x, rows: rows, a.1, scratch: scratch)
            b.0.apply(x, rows: rows, b.1, scratch: scratch)
            if let c { c.0.apply(x, rows: rows, c.1, scratch: scratch) }
            return
        }
        func member(_ m: (WeightMatrix, UnsafeMutablePointer<Float>)) -> Kernels.GroupMember {
            Kernels.GroupMember(weight: m.0.tensor.rawPointer, dtype: m.0.tensor.dtype, outFeatures: m.0.outFeatures, y: m.1)
        }
        Kernels.linearGroup(x: x, rows: rows, inFeatures: k, member(a), member(b), c.map(member))
        a.0.addBias(a.1, rows: rows, ldy: a.0.outFeatures)
        b.0.addBias(b.1, rows: rows, ldy: b.0.outFeatures)
        if let c { c.0.addBias(c.1, rows: rows, ldy: c.0.outFeatures) }
    }

    /// Floats of the f16/bf16/quantized conversion scratch: a band of the weight, not the whole matrix.
    static let convertElements = 4 << 20

    /// Scratch a model with these weight shapes needs (0 for f32 weights).
    static func scratchElements(dtype: DType, largest: Int) -> Int {
        dtype == .f32 ? 0 : min(largest, convertElements)
    }
}

/// Buffers of one forward pass, sized once for `maxRows` rows and `maxContext` keys
/// (no allocation per token). Shapes in the field comments.
final class Workspace {
    let maxRows: Int
    /// [maxRows, hidden] residual stream
    let x: Tensor
    /// [maxRows, hidden] normalized input
    let xn: Tensor
    /// [maxRows, qWidth] queries (GPT-2: fused qkv, 3 * hidden)
    let q: Tensor
    /// [maxRows, heads * headDim] attention output
    let attn: Tensor
    /// [maxRows, kvDim] new keys
    let k: Tensor
    /// [maxRows, kvDim] new values
    let v: Tensor
    /// [maxRows, ffn] FFN gate / first activation
    let ffA: Tensor
    /// [maxRows, ffn] FFN up
    let ffB: Tensor
    /// [maxRows, vocab] logits (rows that want logits, in entry order)
    let logits: Tensor
    /// [maxWeightElements] f16/bf16 -> f32 conversion scratch (empty for f32 models)
    let convert: Tensor
    /// [maxRows] positions
    var positions: [Int32]
    /// When set, `noteLayer` records the first layer whose output holds NaN or infinity (off in
    /// normal passes: one branch per layer; `CausalLM.checkFinite` turns it on for a re-run).
    var traceNonFinite = false
    /// -1: the embedding; 0...: that layer; nil: nothing non-finite seen (or not traced)
    var firstNonFiniteLayer: Int?

    /// After layer `layer` (-1: after the embedding): records it when tracing and the
    /// residual stream `x[0..<count]` holds a non-finite value for the first time.
    @inline(__always)
    func noteLayer(_ layer: Int, _ x: UnsafePointer<Float>, count: Int) {
        guard traceNonFinite, firstNonFiniteLayer == nil else { return }
        for i in 0..<count where !x[i].isFinite { firstNonFiniteLayer = layer; return }
    }

    /// Rows of logits one pass can return.
    static let maxLogitRows = 256

    /// f16/bf16 conversion scratch for a model of this shape (a band of its largest weight).
    static func convertElements(spec s: ModelSpec, weightDType: DType) -> Int {
        WeightMatrix.scratchElements(dtype: weightDType, largest: max(s.vocabSize * s.hiddenSize, s.intermediateSize * s.hiddenSize,
                                                                      s.queryBufferWidth * s.hiddenSize))
    }

    /// Bytes the workspace of a model of this shape holds (the same sizes `init(spec:)` allocates).
    static func bytes(spec s: ModelSpec, maxRows: Int, weightDType: DType) -> Int {
        let attnWidth = s.heads * s.headDim
        return 4 * (maxRows * (2 * s.hiddenSize + s.queryBufferWidth + attnWidth + 2 * s.kvDim + 2 * s.intermediateSize)
                    + min(maxRows, maxLogitRows) * s.vocabSize + max(1, convertElements(spec: s, weightDType: weightDType)))
            + 4 * maxRows
    }

    convenience init(spec s: ModelSpec, maxRows: Int, weightDType: DType) {
        self.init(maxRows: maxRows, hidden: s.hiddenSize, qWidth: s.queryBufferWidth, kvDim: s.kvDim, attnWidth: s.heads * s.headDim,
                  ffn: s.intermediateSize, vocab: s.vocabSize, convertElements: Workspace.convertElements(spec: s, weightDType: weightDType))
    }

    init(maxRows: Int, hidden: Int, qWidth: Int, kvDim: Int, attnWidth: Int, ffn: Int, vocab: Int, convertElements: Int) {
        self.maxRows = maxRows
        x = Tensor(zeros: [maxRows, hidden])
        xn = Tensor(zeros: [maxRows, hidden])
        q = Tensor(zeros: [maxRows, qWidth])
        attn = Tensor(zeros: [maxRows, attnWidth])
        k = Tensor(zeros: [maxRows, kvDim])
        v = Tensor(zeros: [maxRows, kvDim])
        ffA = Tensor(zeros: [maxRows, ffn])
        ffB = Tensor(zeros: [maxRows, ffn])
        logits = Tensor(zeros: [min(maxRows, Workspace.maxLogitRows), vocab])
        convert = Tensor(zeros: [max(1, convertElements)])
        positions = [Int32](repeating: 0, count: maxRows)
    }

    var convertScratch: UnsafeMutablePointer<Float> { convert.f32 }

    /// Fills `positions` from the layout; checks rows and positions.
    func prepare(_ layout: BatchLayout, tokens: Int, maxPositions: Int) throws {
        precondition(layout.totalRows == tokens && tokens <= maxRows, "forward: \(tokens) tokens for \(layout.totalRows) layout rows (max \(maxRows))")
        precondition(layout.logitRows <= logits.shape[0], "forward: \(layout.logitRows) logit rows, at most \(logits.shape[0])")
        for e in layout.entries {
            if e.endPosition > maxPositions { throw ModelError.contextFull(needed: e.endPosition, capacity: maxPositions) }
            for r in 0..<e.rowCount { positions[e.rowStart + r] = Int32(e.startPosition + r) }
        }
    }

    /// Copies the rows that want logits from `x` into consecutive rows of `dst`; returns how many.
    func gatherLogitRows(_ layout: BatchLayout, from x: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, width: Int) -> Int {
        var n = 0
        for e in layout.entries {
            switch e.logits {
            case .none: continue
            case .last:
                (dst + n * width).update(from: x + (e.rowStart + e.rowCount - 1) * width, count: width); n += 1
            case .all:
                (dst + n * width).update(from: x + e.rowStart * width, count: e.rowCount * width); n += e.rowCount
            }
        }
        return n
    }
}

/// Loads weights for a model from its `WeightStore`, checking each tensor's shape against the config.
struct WeightLoader {
    let store: WeightStore
    /// The architecture's tensors and the model's sizes: `weight(_:)`, `bias(_:)` and `norm(_:)`
    /// find a role's name and shape there.
    var table: TensorTable? = nil
    var dims: TensorDims? = nil
    /// The names' prefix (nil: the table's first).
    var prefix: String? = nil

    /// The weight of `role` (in `layer`), its shape from the table.
    func weight(_ role: TensorRole, layer: Int? = nil) throws -> Tensor {
        try tensor(table!.name(role, layer: layer, prefix: prefix), table!.row(role).shape(dims!), layer: layer ?? -1)
    }

    /// `role`'s bias (in `layer`), as an owned f32 vector.
    func bias(_ role: TensorRole, layer: Int? = nil) throws -> Tensor {
        let r = table!.row(role)
        return try vector(table!.name(role, layer: layer, kind: "bias", prefix: prefix), r.shape(dims!)[r.outputAxis], layer: layer ?? -1)
    }

    /// `role`'s vector (a norm's weight), as an owned f32 vector.
    func norm(_ role: TensorRole, layer: Int? = nil) throws -> Tensor {
        try vector(table!.name(role, layer: layer, prefix: prefix), table!.row(role).shape(dims!)[0], layer: layer ?? -1)
    }

    func tensor(_ name: String, _ shape: [Int], layer: Int = -1) throws -> Tensor {
        let t = try store.tensor(name, layer: layer)
        try t.expectShape(shape, "\(name) in \(store.location)")
        return t
    }

    /// A small vector (norm weight, bias) as an owned f32 tensor (read once, kept in RAM).
    func vector(_ name: String, _ n: Int, layer: Int = -1) throws -> Tensor {
        try tensor(name, [n], layer: layer).contiguousF32()
    }
}

/// A model's forward-pass buffers and who may run at once. A pass over a single-sequence
/// `KVCache` uses that cache's own workspace, so `Generator`s on one model run concurrently;
/// a pass over any other storage (the batch engine's paged cache) uses the model's shared
/// workspace, and a streaming weight store (layers acquired in order) admits one pass at a time:
/// those take the lock. `begin` before the pass, `end` after it (no closure: nothing allocated).
final class ForwardBuffers: @unchecked Sendable {
    let spec: ModelSpec
    let maxRows: Int
    let weightDType: DType
    let store: WeightStore
    private var shared: Workspace?
    private let lock = NSLock()

    /// `matrices`: every weight matrix the pass multiplies by. The conversion scratch is sized
    /// when any of them is not f32 (each tensor has its own dtype: an f32 embedding over f16 or
    /// quantized layers is an ordinary checkpoint).
    init(spec: ModelSpec, maxRows: Int, matrices: [WeightMatrix], store: WeightStore) {
        self.spec = spec; self.maxRows = maxRows; self.store = store
        weightDType = matrices.first { $0.tensor.dtype != .f32 }?.tensor.dtype ?? .f32
    }

    /// Bytes of one workspace.
    var bytes: Int { Workspace.bytes(spec: spec, maxRows: maxRows, weightDType: weightDType) }

    private func serialized(_ kv: KVStorage) -> Bool { !(kv is KVCache) || store.streams }

    /// The workspace for a pass over `kv` (taking the lock when the pass must run alone).
    func begin(_ kv: KVStorage) -> Workspace {
        if let own = kv as? KVCache, !store.streams { return own.workspace(spec: spec, maxRows: maxRows, weightDType: weightDType) }
        lock.lock()
        if let kvc = kv as? KVCache { return kvc.workspace(spec: spec, maxRows: maxRows, weightDType: weightDType) }
        if let ws = shared { return ws }
        let ws = Workspace(spec: spec, maxRows: maxRows, weightDType: weightDType)
        shared = ws
        return ws
    }

    /// Ends the pass `begin(kv)` started.
    func end(_ kv: KVStorage) { if serialized(kv) { lock.unlock() } }
}

/// Throws `ModelError.nonFiniteLogits` when a row of logits holds NaN or infinity.
public func checkFiniteLogits(_ row: UnsafeBufferPointer<Float>, position: Int) throws {
    var bad = 0
    for x in row where !x.isFinite { bad += 1 }
    if bad > 0 { throw ModelError.nonFiniteLogits(position: position, count: bad) }
}

extension CausalLM {
    /// Sequences up to this long are re-run to name where a non-finite pass went wrong.
    public static var nonFiniteTraceLimit: Int { 4096 }

    /// Throws `ModelError.nonFiniteLogits` when `row` (the logits of `position`) holds NaN or
    /// infinity, naming where the pass first went non-finite: the sequence (`tokens()`, the
    /// tokens up to and including `position`) is run again over a fresh cache with each layer's
    /// output checked. Costs nothing while the logits are finite.
    public func checkFinite(_ row: UnsafeBufferPointer<Float>, position: Int, tokens: () -> [Int32]) throws {
        do { try checkFiniteLogits(row, position: position) } catch let ModelError.nonFiniteLogits(p, n, _) {
            throw ModelError.nonFiniteLogits(position: p, count: n, where: try? nonFinitePlace(tokens()))
        }
    }

    /// Where a pass over `tokens` first goes non-finite (nil: nowhere, or too long to re-run).
    public func nonFinitePlace(_ tokens: [Int32]) throws -> NonFinitePlace? {
        guard !tokens.isEmpty, tokens.count <= min(spec.maxPositions, Self.nonFiniteTraceLimit) else { return nil }
        let cache = makeCache(capacity: tokens.count)
        cache.traceNonFinite = true
        let out = try tokens.withUnsafeBufferPointer { try forward($0, cache: cache, allLogits: false) }
        switch cache.firstNonFiniteLayer {
        case .some(-1): return .embedding
        case let .some(l): return .layer(l, of: spec.layers)
        case .none: return out.contains { !$0.isFinite } ? .head : nil
        }
    }
}
