import Foundation
import StrataFormats
import StrataTensor

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
    /// A mixture of experts' routing buffers (nil for a dense model)
    let moe: MoEBuffers?
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
        return 4 * (maxRows * (2 * s.hiddenSize + s.queryBufferWidth + attnWidth + 2 * s.kvDim + 2 * ffnWidth(s))
                    + min(maxRows, maxLogitRows) * s.vocabSize + max(1, convertElements(spec: s, weightDType: weightDType)))
            + 4 * maxRows + (s.moe.map { MoEBuffers.bytes(maxRows: maxRows, hidden: s.hiddenSize, shape: $0) } ?? 0)
    }

    /// Columns of the MLP's buffers: the dense MLP's, or an expert's when wider.
    static func ffnWidth(_ s: ModelSpec) -> Int { max(s.intermediateSize, s.moe?.intermediate ?? 0) }

    convenience init(spec s: ModelSpec, maxRows: Int, weightDType: DType) {
        self.init(maxRows: maxRows, hidden: s.hiddenSize, qWidth: s.queryBufferWidth, kvDim: s.kvDim, attnWidth: s.heads * s.headDim,
                  ffn: Workspace.ffnWidth(s), vocab: s.vocabSize, convertElements: Workspace.convertElements(spec: s, weightDType: weightDType),
                  moe: s.moe)
    }

    init(maxRows: Int, hidden: Int, qWidth: Int, kvDim: Int, attnWidth: Int, ffn: Int, vocab: Int, convertElements: Int, moe: MoEShape? = nil) {
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
        self.moe = moe.map { MoEBuffers(maxRows: maxRows, hidden: hidden, shape: $0) }
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

    /// The checkpoint name of `role`'s weight in `layer`, and its shape, from the table.
    func name(_ role: TensorRole, layer: Int? = nil) -> String { table!.name(role, layer: layer, prefix: prefix) }
    func shape(_ role: TensorRole) -> [Int] { table!.row(role).shape(dims!) }

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
