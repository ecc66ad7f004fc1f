import Foundation
import StrataModels
import StrataTensor

/// A bad `--prompts-file`: which file, which line, what is wrong.
public enum PromptsFileError: Error, CustomStringConvertible, Equatable, Sendable {
    case unreadable(file: String, reason: String)
    case line(file: String, line: Int, reason: String)
    case empty(file: String)

    public var description: String {
        switch self {
        case let .unreadable(f, r): return "--prompts-file: cannot read \(f): \(r)"
        case let .line(f, l, r): return "\(f):\(l): \(r)"
        case let .empty(f): return "--prompts-file: \(f) holds no prompts"
        }
    }
}

/// `strata generate --prompts-file`: one prompt per line, or JSONL objects with "prompt" or
/// "ids" and optional "max_tokens", "temperature", "top_k", "top_p", "seed", "n", "stop". Every
/// field checked here (sampling ranges, n, max_tokens); token ids are checked against the model
/// when the batch runs.
public enum PromptsFile {
    struct Line: Decodable {
        var prompt: String?
        var ids: [Int]?
        var max_tokens: Int?
        var temperature: Float?
        var top_k: Int?
        var top_p: Float?
        var seed: UInt64?
        var n: Int?
        var stop: [String]?
    }

    /// The largest prompts file read (a prompts file is text someone wrote or a script made).
    public static let maxBytes = 256 << 20

    /// Reads `path` (a regular file, never blocking on a FIFO) and parses it.
    public static func read(_ path: String, defaults: SamplingParameters, encode: (String) throws -> [Int]) throws -> [GenerationRequest] {
        let data: Data
        do {
            guard let d = try FileIO.readSmallFile(path, limit: maxBytes) else { throw PromptsFileError.unreadable(file: path, reason: "no such file") }
            data = d
        } catch let e as FileError {
            throw PromptsFileError.unreadable(file: path, reason: "\(e)")
        }
        return try parse(data, file: path, defaults: defaults, encode: encode)
    }

    /// The requests of a prompts file's bytes, in order; `file` names it in errors.
    public static func parse(_ data: Data, file: String, defaults: SamplingParameters, encode: (String) throws -> [Int]) throws -> [GenerationRequest] {
        guard let text = String(data: data, encoding: .utf8) else { throw PromptsFileError.unreadable(file: file, reason: "not UTF-8 text") }
        var requests: [GenerationRequest] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            func bad(_ reason: String) -> PromptsFileError { .line(file: file, line: n + 1, reason: reason) }
            var base = defaults
            var promptIDs: [Int]
            var samples = 1
            if line.hasPrefix("{") {
                let r: Line
                do { r = try JSONDecoder().decode(Line.self, from: Data(line.utf8)) } catch {
                    throw bad("not a JSON request object (\(error))")
                }
                if let ids = r.ids { promptIDs = ids } else if let p = r.prompt { promptIDs = try encode(p) } else {
                    throw bad("needs \"prompt\" or \"ids\"")
                }
                base.maxTokens = r.max_tokens ?? base.maxTokens
                base.temperature = r.temperature ?? base.temperature
                base.topK = r.top_k ?? base.topK
                base.topP = r.top_p ?? base.topP
                base.seed = r.seed ?? base.seed
                base.stopStrings = r.stop ?? base.stopStrings
                samples = r.n ?? 1
            } else {
                promptIDs = try encode(line)
            }
            do { try base.validate() } catch let SamplingError.invalid(field, reason) {
                throw bad("\(field): \(reason)")
            }
            if samples < 1 || samples > BatchEngine.maxSamples { throw bad("n must be in 1...\(BatchEngine.maxSamples), got \(samples)") }
            requests.append(GenerationRequest(prompt: promptIDs, parameters: base, n: samples))
        }
        if requests.isEmpty { throw PromptsFileError.empty(file: file) }
        return requests
    }
}
