import Foundation

/// How often a mixture's tokens chose each routed expert, counted over a calibration text
/// (`strata profile --routing MODEL`) and kept beside the hardware profile: the planner's routing
/// model for that checkpoint. A trained model reuses some experts far more than others, so the
/// uniform routing the planner otherwise assumes (a cache's worst case) under-predicts its hit
/// rate; a histogram measured on the model itself predicts it.
public struct RoutingHistogram: Codable, Sendable, Equatable {
    public var schemaVersion = 1
    /// the checkpoint (a folder or a GGUF file) and what identifies its weights: each weight
    /// file's name, size and modification time (a histogram of other weights is not used)
    public var model: String
    public var fingerprint: String
    /// the calibration text's tokens, routed by every sparse layer
    public var tokens: Int
    public var experts: Int
    public var perToken: Int
    /// per layer of the model: times each expert was chosen (empty for a layer without experts)
    public var counts: [[Int]]
    /// when it was measured (ISO 8601)
    public var measured: String

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", model, fingerprint, tokens, experts, perToken = "per_token", counts, measured
    }

    public init(model: String, fingerprint: String, tokens: Int, experts: Int, perToken: Int, counts: [[Int]], measured: String) {
        self.model = model; self.fingerprint = fingerprint; self.tokens = tokens; self.experts = experts; self.perToken = perToken
        self.counts = counts; self.measured = measured
    }

    /// Per layer with experts: each expert's chance to be chosen by a token (count / tokens,
    /// adding up to `perToken`), largest first.
    public var shares: [[Double]] {
        counts.filter { !$0.isEmpty }.map { c in c.map { Double($0) / Double(max(1, tokens)) }.sorted(by: >) }
    }

    /// The mean over the sparse layers of each one's entropy over log2(experts): 1 is uniform.
    public var entropy: Double {
        let layers = counts.filter { !$0.isEmpty }
        guard !layers.isEmpty, experts > 1 else { return 0 }
        return layers.reduce(0.0) { acc, c in
            let total = Double(c.reduce(0, +))
            guard total > 0 else { return acc }
            return acc + c.reduce(0.0) { $1 == 0 ? $0 : $0 - Double($1) / total * log2(Double($1) / total) } / log2(Double(experts))
        } / Double(layers.count)
    }

    /// Why the histogram does not describe a mixture of this shape (nil: it does).
    public func mismatch(experts e: Int, perToken k: Int, sparseLayers: [Bool]) -> String? {
        if experts != e || perToken != k { return "measured for \(experts) experts, \(perToken) per token; the model has \(e), \(k)" }
        if counts.count != sparseLayers.count { return "measured over \(counts.count) layers; the model has \(sparseLayers.count)" }
        for (l, c) in counts.enumerated() where c.isEmpty == sparseLayers[l] || (!c.isEmpty && c.count != e) {
            return "layer \(l): \(c.count) counts for a layer \(sparseLayers[l] ? "with" : "without") experts"
        }
        if tokens <= 0 { return "no tokens counted" }
        for c in counts where c.contains(where: { $0 < 0 }) || c.reduce(0, +) > tokens * k { return "counts beyond the tokens' choices" }
        return nil
    }
}
