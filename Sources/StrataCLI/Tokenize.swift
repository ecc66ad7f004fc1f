import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Encode text; prints {\"ids\":[...]}.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (holds tokenizer.json) or GGUF file.") var model: String
    @Option(help: "Text to encode.") var text: String?
    @Option(name: .customLong("text-file"), help: "Encode this file's text instead (UTF-8).") var textFile: String?
    @Flag(name: .customLong("no-special"), help: "Do not add the post-processor's special tokens (BOS).") var noSpecial = false
    func run() throws {
        let tok = try Tokenizer.open(model: model)
        var input = text ?? ""
        if let textFile {
            guard let data = try FileIO.readSmallFile(textFile, limit: 1 << 30) else { throw ValidationError("--text-file: \(textFile) not found") }
            input = String(decoding: data, as: UTF8.self)
        } else if text == nil {
            throw ValidationError("give --text or --text-file")
        }
        try printJSON(["ids": tok.encode(input, addSpecialTokens: !noSpecial)])
    }
}
