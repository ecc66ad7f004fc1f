import Foundation
import StrataFormats
import StrataTensor

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
    /// The layers whose K/V this process computes and keeps: all of them, except on a pipeline
    /// stage of a distributed run (caches made for the model store only these).
    var kvLayers: Range<Int> { get }
}

extension CausalLM {
    public var kvLayers: Range<Int> { 0..<spec.layers }

    /// Most rows of logits one `forward(_:layout:kv:)` returns (rows of every entry that wants them).
    public var maxLogitRows: Int { min(maxRows, Workspace.maxLogitRows) }

    /// A contiguous cache for up to `capacity` positions (at most `spec.maxPositions`) in f32.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: spec.layers, capacity: min(capacity, spec.maxPositions), kvDim: spec.kvDim, headDim: spec.headDim, stored: kvLayers)
    }

    /// A contiguous cache storing K/V as `type`; throws when the type cannot hold this model's
    /// heads (q8_0 needs a head size that is a multiple of 32).
    public func makeCache(capacity: Int, type: DType) throws -> KVCache {
        try type.checkKV(headDim: spec.headDim)
        return KVCache(layers: spec.layers, capacity: min(capacity, spec.maxPositions), kvDim: spec.kvDim, headDim: spec.headDim, type: type,
                       stored: kvLayers)
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

    /// The hidden states of every position of `tokens` after the final norm, `[T][hidden]`
    /// (transformers' `last_hidden_state`), from a cache of their own, in chunks of `maxLogitRows`.
    public func hiddenStates(_ tokens: [Int32]) throws -> [[Float]] {
        if tokens.isEmpty { throw ModelError.emptyInput }
        try tokens.withUnsafeBufferPointer { try checkTokens($0) }
        if tokens.count > spec.maxPositions { throw ModelError.contextFull(needed: tokens.count, capacity: spec.maxPositions) }
        let cache = makeCache(capacity: tokens.count)
        let h = spec.hiddenSize, chunk = maxLogitRows
        var out: [[Float]] = []
        var done = 0
        while done < tokens.count {
            let r = min(chunk, tokens.count - done)
            cache.layout.removeAll()
            cache.layout.hiddenStates = true
            defer { cache.layout.hiddenStates = false }
            cache.layout.append(sequence: 0, rows: r, startPosition: cache.length, logits: .all)
            let x = try tokens[done..<(done + r)].withUnsafeBufferPointer { try forward($0, layout: cache.layout, kv: cache) }
            for i in 0..<r { out.append(Array(x[(i * h)..<((i + 1) * h)])) }
            cache.length += r
            done += r
        }
        return out
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
