// use_subject_as_username: the subject as Mosquitto gives it (OpenSSL's XN_FLAG_RFC2253 form).
// Expected strings are what `openssl x509 -noout -subject -nameopt RFC2253` prints for the same names.
#if canImport(SluiceServer) && canImport(NIOSSL) && canImport(CNIOPosix) && canImport(CNIOBoringSSL)
    import NIOSSL
    import Testing

    @testable import SluiceServer

    @Suite struct SubjectNameTests {
        /// A certificate shell around a subject Name (DER): just the fields `DERSubject` walks.
        static func certificate(subject: [UInt8]) -> [UInt8] {
            func element(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
                precondition(content.count < 0x1_0000)
                let length: [UInt8] =
                    content.count < 0x80
                    ? [UInt8(content.count)] : [0x82, UInt8(content.count >> 8), UInt8(content.count & 0xFF)]
                return [tag] + length + content
            }
            let tbs = element(0x02, [1]) + element(0x30, []) + element(0x30, []) + element(0x30, []) + subject
            return element(0x30, element(0x30, tbs))
        }

        static func bytes(hex: String) -> [UInt8] {
            let digits = Array(hex.utf8)
            return stride(from: 0, to: digits.count, by: 2).map {
                UInt8(String(decoding: digits[$0...$0 + 1], as: UTF8.self), radix: 16)!
            }
        }

        @Test func theFixtureClientCertificate() throws {
            let der = try NIOSSLCertificate.fromPEMFile(fixture("tls/client.pem"))[0].toDERBytes()
            #expect(DERSubject.rfc2253(certificateDER: der) == "CN=device1,O=Sluice tests")
        }

        @Test func escapingMultiValuedRDNsUnknownAttributesAndStringTypes() {
            // C=GB / O=" #lead, trail " / OU="a\nb\u{7F}c#" (UTF8String) / L="Zürich" (BMPString) /
            // 1.2.3.4="y" / CN="dev é" + UID="u1", written by Python's cryptography.
            let name = Self.bytes(
                hex: "307d310b300906035504061302474231173015060355040a0c0e20236c6561642c20747261696c20310f300d06035504"
                    + "0b0c06610a627f63233115301306035504071e0c005a00fc0072006900630068310a300806032a03040c01793121300d"
                    + "06035504030c0664657620c3a93010060a0992268993f22c6401010c027531"
            )
            #expect(
                DERSubject.rfc2253(certificateDER: Self.certificate(subject: name))
                    == #"UID=u1+CN=dev \C3\A9,1.2.3.4=#0C0179,L=Z\C3\BCrich,OU=a\0Ab\7Fc#,O=\ #lead\, trail\ ,C=GB"#
            )
        }

        @Test func specialCharactersAndOrder() {
            // openssl req -subj '/C=GB/O=Server\, Ltd\+Co/OU=Prod;a<b>c/CN=q"\\=x' (PrintableString C, UTF8String others)
            func attribute(_ oid: UInt8, _ tag: UInt8, _ text: String) -> [UInt8] {
                let value = Array(text.utf8)
                let sequence = [0x06, 0x03, 0x55, 0x04, oid] + [tag, UInt8(value.count)] + value
                return [0x31, UInt8(sequence.count + 2), 0x30, UInt8(sequence.count)] + sequence
            }
            let rdns =
                attribute(6, 0x13, "GB") + attribute(10, 0x0C, "Server, Ltd+Co") + attribute(11, 0x0C, "Prod;a<b>c")
                + attribute(3, 0x0C, #"q"\=x"#)
            let name = [0x30, UInt8(rdns.count)] + rdns
            #expect(
                DERSubject.rfc2253(certificateDER: Self.certificate(subject: name))
                    == #"CN=q\"\\=x,OU=Prod\;a\<b\>c,O=Server\, Ltd\+Co,C=GB"#
            )
        }

        @Test func unreadableCertificatesGiveNoName() {
            #expect(DERSubject.rfc2253(certificateDER: []) == nil)
            #expect(DERSubject.rfc2253(certificateDER: [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
            // An attribute without its value is not a name.
            let broken: [UInt8] = [0x30, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x03, 0x55, 0x04, 0x03]
            #expect(DERSubject.rfc2253(certificateDER: Self.certificate(subject: broken)) == nil)
            // An empty subject is an empty name, as OpenSSL prints it.
            #expect(DERSubject.rfc2253(certificateDER: Self.certificate(subject: [0x30, 0x00])) == "")
        }
    }
#endif
