import Foundation
import FuzzSupport
import Strata

/// A `--prompts-file`: plain lines and JSONL request objects parsed and validated as `strata
/// generate` does (prompts encoded as their UTF-8 bytes): requests within the engine's limits,
/// or a typed error.
func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let d = Data(bytes: data, count: size)
    guard let requests = try? PromptsFile.parse(d, file: "fuzz.jsonl", defaults: .greedy, encode: { $0.utf8.map(Int.init) }) else { return 0 }
    for r in requests {
        // what the parser promises the engine: a finding if it lets one through
        precondition(r.n >= 1 && r.n <= BatchEngine.maxSamples, "a request passed validation with n \(r.n)")
        precondition(r.parameters.maxTokens >= 0 && r.parameters.maxTokens <= SamplingParameters.maxTokensLimit, "max_tokens \(r.parameters.maxTokens) passed")
    }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
