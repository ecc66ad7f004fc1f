/// The rows of one forward pass, grouped by sequence. Row `r` of entry `e` is token
/// `e.rowStart + r` of the pass, at position `e.startPosition + r` of sequence `e.sequence`.
/// Reused across steps (entries keep their capacity), so a decode step allocates nothing.
public final class BatchLayout: @unchecked Sendable {
    public enum Logits: Sendable { case none, last, all }
    public struct Entry: Sendable {
        public var sequence: Int
        public var rowStart: Int
        public var rowCount: Int
        public var startPosition: Int
        public var logits: Logits
        public init(sequence: Int, rowStart: Int, rowCount: Int, startPosition: Int, logits: Logits) {
            self.sequence = sequence; self.rowStart = rowStart; self.rowCount = rowCount
            self.startPosition = startPosition; self.logits = logits
        }
        /// Keys visible to this entry's last row.
        public var endPosition: Int { startPosition + rowCount }
    }
    public private(set) var entries: [Entry] = []
    public private(set) var totalRows = 0
    /// The pass returns the rows that want logits as hidden states (after the final norm,
    /// `[rows, hidden]`: what embeddings pool) instead of logits.
    public var hiddenStates = false
    /// A pipeline stage's pass (one rank of a distributed run, StrataMPI): only these layers run
    /// (nil: all). When they start after layer 0 the rows' residual stream comes from `stageInput`
    /// instead of the embedding; when they end before the last layer the pass returns the
    /// residual stream of every row (`[rows, hidden]`) instead of logits.
    public var stageLayers: Range<Int>? = nil
    /// `[rows, hidden]`: the residual stream after the layers before `stageLayers` (read at the
    /// pass's start; valid during the call).
    public var stageInput: UnsafePointer<Float>? = nil

    public init(capacity: Int = 64) { entries.reserveCapacity(capacity) }

    /// The layers this pass runs of a model of `count` layers.
    public func layers(of count: Int) -> Range<Int> {
        guard let s = stageLayers else { return 0..<count }
        precondition(s.lowerBound >= 0 && s.upperBound <= count && !s.isEmpty && (s.lowerBound == 0 || stageInput != nil),
                     "BatchLayout: stage \(s) of \(count) layers")
        return s
    }

    /// Starts the residual stream `x` (`[rows, width]`) of a stage that begins after layer 0 from
    /// `stageInput`; false when the stage begins at the embedding (the model embeds then).
    public func startFromStageInput(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int) -> Bool {
        guard let s = stageLayers, s.lowerBound > 0, let input = stageInput else { return false }
        x.update(from: input, count: rows * width)
        return true
    }

    public func removeAll() { entries.removeAll(keepingCapacity: true); totalRows = 0 }

    /// Appends `rows` rows of `sequence` starting at `position`.
    public func append(sequence: Int, rows: Int, startPosition: Int, logits: Logits) {
        precondition(rows > 0, "BatchLayout: an entry needs rows")
        entries.append(Entry(sequence: sequence, rowStart: totalRows, rowCount: rows, startPosition: startPosition, logits: logits))
        totalRows += rows
    }

    /// Logit rows the pass returns, in entry order.
    public var logitRows: Int {
        entries.reduce(0) { $0 + ($1.logits == .all ? $1.rowCount : ($1.logits == .last ? 1 : 0)) }
    }
}

/// Where a forward pass keeps keys and values, and how it attends over them. The models
/// compute K/V rows and hand them here, so the same forward pass runs on a contiguous
/// per-sequence cache or on a paged block pool.
public protocol KVStorage: AnyObject {
    /// Writes rows of K and V for `layer` (`[rows, kvDim]` with row strides `ldk`, `ldv`) at
    /// the positions `layout` gives them.
    func write(layer: Int, layout: BatchLayout, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int)
    /// Causal attention of each entry's query rows over its sequence's keys `0 ..< endPosition`,
    /// as `attention` says (heads, scale, soft-capping, window); `q` `[rows, heads * headDim]`,
    /// `out` `[rows, heads * headDim]`.
    func attend(layer: Int, layout: BatchLayout, q: UnsafePointer<Float>, ldq: Int, out: UnsafeMutablePointer<Float>, ldo: Int,
                attention: AttentionSettings)
}

/// How one layer attends, fixed when the model is built (one value per layer, so a model's
/// quirk is a field here rather than a parameter of every call).
public struct AttentionSettings: Sendable, Equatable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Multiplies q.k (usually 1 / sqrt(headDim)).
    public var scale: Float
    /// > 0: scores become `softcap * tanh(score / softcap)` (Gemma-2).
    public var softcap: Float
    /// > 0: a query at position p sees only keys after p - window (sliding-window layers).
    public var window: Int
    /// gpt-oss's attention sinks: one logit per query head (`[heads]`) that joins each softmax's
    /// denominator and attends to nothing; empty: none.
    public var sinks: [Float]
    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil, softcap: Float = 0, window: Int = 0, sinks: [Float] = []) {
        precondition(sinks.isEmpty || sinks.count == heads, "AttentionSettings: \(sinks.count) sinks for \(heads) heads")
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot(); self.softcap = softcap; self.window = window; self.sinks = sinks
    }

    /// `body` with the sinks' storage (nil: none); nothing allocated.
    @inline(__always)
    public func withSinks<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        if sinks.isEmpty { return try body(nil) }
        return try sinks.withUnsafeBufferPointer { try body($0.baseAddress) }
    }
}



/// K/V rows in a cache's storage type (`DType.kvTypes`): f32 rows stored (rounded to f16 or
/// bf16, quantized to q8_0 by ggml's reference formula, as llama.cpp stores a q8_0 cache).
public enum KVRows {
    /// `count` f32 values (a multiple of the type's block) into `type` at `dst`.
    @inline(__always)
    public static func store(_ type: DType, _ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        switch type {
        case .f32: dst.assumingMemoryBound(to: Float.self).update(from: src, count: count)
        case .f16: HalfConversion.f32ToF16(src, dst.assumingMemoryBound(to: UInt16.self), count: count)
        case .bf16: HalfConversion.f32ToBF16(src, dst.assumingMemoryBound(to: UInt16.self), count: count)
        default: Quantizer.quantize(src, count: count, to: type, into: dst)
        }
    }

    /// One row of all kv heads (`heads * headDim` f32 values at `src`) stored head by head: head
    /// g's values at `dst + g * headStride` (the caches keep each head's rows together).
    @inline(__always)
    public static func storeHeads(_ type: DType, _ src: UnsafePointer<Float>, heads: Int, headDim d: Int,
                                  _ dst: UnsafeMutableRawPointer, headStride: Int) {
        for g in 0..<heads { store(type, src + g * d, dst + g * headStride, count: d) }
    }
}
