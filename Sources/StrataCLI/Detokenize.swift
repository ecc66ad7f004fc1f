import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Decode ids; prints {\"text\":\"...\"}.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (holds tokenizer.json) or GGUF file.") var model: String
    @Option(help: "Comma-separated token ids.") var ids: String
    @Flag(name: .customLong("skip-special"), help: "Leave special tokens out of the text.") var skipSpecial = false
    func run() throws {
        let tok = try Tokenizer.open(model: model)
        try printJSON(["text": tok.decode(parseIDs(ids), skipSpecialTokens: skipSpecial, strict: true)])
    }
}
