import Foundation
import StrataFormats
import StrataModels

/// Paths of the committed fixtures (made by scripts/make_fixtures.py).
enum Fixtures {
    static let root: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").path
    }()
    static func model(_ name: String) -> String { root + "/models/" + name }
    static func tokenizer(_ name: String) -> String { root + "/tokenizers/" + name }

    struct Reference: Decodable {
        let name: String
        let architecture: String
        let dtype: String
        let sequences: [[Int]]
        let greedy_prompt: [Int]
        let greedy_continuation: [Int]
    }

    static func reference(_ model: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: URL(fileURLWithPath: self.model(model) + "/reference.json")))
    }

    /// Reference logits of sequence `i`, `[T][vocab]`.
    static func referenceLogits(_ model: String, _ i: Int) throws -> [[Float]] {
        let f = try SafetensorsFile(path: self.model(model) + "/reference.safetensors")
        let t = try f.tensor("seq\(i)")
        let rows = t.shape[0], v = t.shape[1]
        let all = t.toArray()
        return (0..<rows).map { Array(all[($0 * v)..<($0 * v + v)]) }
    }

    static let scratch: String = {
        let d = NSTemporaryDirectory() + "strata-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()
}
