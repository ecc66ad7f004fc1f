import Foundation
import StrataFormats
import StrataTensor

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
    /// Another process's request this model cannot serve (expert shards).
    case badRequest(String)
    /// A grammar allowed no token of the vocabulary (it needs bytes no token spells).
    case grammarDeadEnd(kind: String, generated: Int)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(t, v): return "token id \(t) outside the vocabulary (0..<\(v))"
        case let .nonFiniteLogits(p, n, place):
            let at = place.map { "; first non-finite \($0)" } ?? ""
            return "the model's logits at position \(p) are not finite (\(n) NaN or infinite values\(at)): its weights or config make the arithmetic blow up"
        case let .contextFull(n, c): return "sequence needs \(n) positions but the cache/model holds \(c)"
        case .emptyInput: return "no input tokens"
        case let .badRequest(m): return m
        case let .grammarDeadEnd(k, n): return "the \(k) allows no token of the vocabulary after \(n) tokens (it needs bytes no token spells)"
        }
    }
}

/// Throws `ModelError.nonFiniteLogits` when a row of logits holds NaN or infinity.
public func checkFiniteLogits(_ row: UnsafeBufferPointer<Float>, position: Int) throws {
    var bad = 0
    for x in row where !x.isFinite { bad += 1 }
    if bad > 0 { throw ModelError.nonFiniteLogits(position: position, count: bad) }
}
