// What a Java user of Apache Avro does with tokenfuse messages (tests/integration/test_avro_java.py).
//   java -cp 'libs/*' AvroInterop.java decode SCHEMA.avsc  < hex lines   -> one JSON record per line
//   java -cp 'libs/*' AvroInterop.java encode SCHEMA.avsc JSON           -> the single-object bytes, hex
// Avro's own single-object encoder and decoder: BinaryMessageDecoder finds the writer schema by
// the header's fingerprint and rejects a message whose fingerprint it does not know.
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.util.HexFormat;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

public class AvroInterop {
  public static void main(String[] args) throws Exception {
    Schema schema = new Schema.Parser().parse(new File(args[1]));
    HexFormat hex = HexFormat.of();
    if (args[0].equals("decode")) {
      BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), schema);
      BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        try {
          System.out.println(decoder.decode(hex.parseHex(line.trim())));
        } catch (Exception e) {
          System.out.println("ERROR " + e.getMessage());
        }
      }
    } else {
      GenericRecord record = new GenericDatumReader<GenericRecord>(schema)
          .read(null, DecoderFactory.get().jsonDecoder(schema, args[2]));
      ByteBuffer encoded = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(record);
      byte[] bytes = new byte[encoded.remaining()];
      encoded.get(bytes);
      System.out.println(hex.formatHex(bytes));
    }
  }
}
