import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Encode text; prints {\"ids\":[...]}.")
    @Option(help: "Model folder (holds tokenizer.json) or GGUF file.") var model: String
    @Option(help: "Text to encode.") var text: String
    @Flag(name: .customLong("no-special"), help: "Do not add the post-processor's special tokens (BOS).") var noSpecial = false
    func run() throws {
        let tok = try Tokenizer.open(model: model)
        try printJSON(["ids": tok.encode(text, addSpecialTokens: !noSpecial)])
    }
}
