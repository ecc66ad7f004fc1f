/// The lines of the RAM account. Every byte Strata keeps resident is charged to one of these by
/// the run's ledger (`StrataMemory.Ledger`), and the planner predicts the same lines
/// (`Plan.ledger`), so a plan and the run it becomes print the same lines under the same names.
public enum LedgerLine: String, CaseIterable, Sendable, Codable {
    /// The process beyond Strata's own buffers (code, libraries, thread stacks).
    case runtime = "runtime overhead"
    /// The forward pass's buffers (activations, logits, conversion scratch).
    case activations = "activations"
    /// Tensors outside the layers kept in RAM: the head (the embedding when tied), the final norm.
    case otherWeights = "embeddings, norms, head"
    /// The resident layers' tensors (and the small vectors of streamed layers).
    case layerWeights = "resident layers"
    /// The slots streamed layers are read into.
    case staging = "staging buffers"
    /// The expert cache's slots (a mixture's routed experts, read one by one).
    case expertCache = "expert cache"
    /// KV cache blocks in RAM.
    case kv = "KV cache (RAM)"
    /// Page cache a cold (untied) embedding's rows pass through, a row per token.
    case coldRows = "embedding rows (page cache)"

    /// `bytes` as `[name: bytes]` with every line present (zero where nothing is charged), for
    /// JSON and reports.
    public static func named(_ bytes: [LedgerLine: Int]) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, bytes[$0] ?? 0) })
    }
}
