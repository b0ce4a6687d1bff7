"""The benchmarks' notifications: Brazilian people, subjects and texts as a notification system sends them.

Deterministic (each generator has its own seeded random.Random) and every address distinct: each recipient takes
the next serial number of its generator, and the figures' generators start far apart (SERIALS), so no address
repeats within a run. Why it matters: one recipient and an English ASCII text measured a worker faster than real
traffic lets it be (a RCPT per recipient, quoted-printable bodies, RFC 2047 display names and subjects, search keys).
"""
import json
import random
import unicodedata

# First serial of each family of figures: the drains (P1, P2, P5), the drains on PostgreSQL, the seeded instance of
# the page figures, and the API posts (which go into that same seeded database), so that no address is used twice in
# a database. The seeded PostgreSQL database holds the same notifications as the SQLite one, and gets the same posts.
SERIALS = {"delivery": 1_000, "postgresql": 40_000, "seed": 100_000, "api": 5_000_000}

FIRST_NAMES = [
    "Ana", "Ana Luíza", "Maria", "Maria Conceição", "Márcia", "Cláudia", "Júlia", "Letícia", "Patrícia", "Mônica",
    "Lúcia", "Inês", "Cecília", "Flávia", "Débora", "Natália", "Vitória", "Lívia", "Raíssa", "Thaís", "Beatriz",
    "Fernanda", "Gabriela", "Luana", "Érica", "Sônia", "Valéria", "Jéssica", "Tânia", "Helena", "João", "João Vítor",
    "José", "Antônio", "Sérgio", "Fábio", "Vinícius", "Otávio", "Estêvão", "André", "César", "Mário", "Simão",
    "Tomás", "Sebastião", "Luís", "Caetano", "Márcio", "Rogério", "Flávio", "Lúcio", "Caio", "Thiago", "Rafael",
    "Gustavo", "Henrique", "Joaquim", "Benedito", "Ícaro", "Elísio",
]
SURNAMES = [
    "Souza", "Silva", "Conceição", "Gonçalves", "Araújo", "Simões", "Magalhães", "Assunção", "Guimarães", "Brandão",
    "Falcão", "Peçanha", "Camões", "Lacerda", "Sá", "Antunes", "Loureiro", "Romão", "Galvão", "Mourão", "Leão",
    "Nóbrega", "Correia", "Fonseca", "Gusmão", "Barbosa", "Ribeiro", "Rocha", "Monteiro", "Nascimento", "Cardoso",
    "Teixeira", "Vieira", "Pereira", "Lima", "Moraes", "Estêves", "Patrício", "Damião", "Tavares",
]
DOMAINS = ["exemplo.com.br", "correio.exemplo.br", "empresa.exemplo.com", "mail.exemplo.net.br",
           "provedor.exemplo.com.br", "exemplo.org.br"]
MONTHS = ["janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
          "novembro", "dezembro"]

# (subject, text): str.format templates; each text is about 1,000 characters once filled in.
KINDS = [
    ("Sua fatura de {mes} está disponível — vencimento em {data}",
     "Olá, {nome},\n\n"
     "Sua fatura de {mes} já está disponível para consulta e pagamento. O valor total é de R$ {valor}, com "
     "vencimento em {data}.\n\n"
     "Você pode pagar pelo aplicativo, pelo internet banking ou em qualquer agência, com o código de barras abaixo:\n"
     "{codigo}\n\n"
     "Se preferir, ative o débito automático na área do cliente: a cobrança passa a ser feita na data de "
     "vencimento, sem tarifas adicionais, e você recebe a confirmação por e-mail.\n\n"
     "Atenção: pagamentos feitos após o vencimento terão multa de 2% e juros de 0,033% ao dia, lançados na "
     "próxima fatura. Caso o pagamento já tenha sido efetuado, por favor desconsidere esta mensagem.\n\n"
     "Dúvidas sobre lançamentos, contestações ou segunda via? Nossa central de atendimento funciona de segunda a "
     "sábado, das 8h às 20h, pelo telefone 0800 123 4567 ou pelo chat do aplicativo.\n\n"
     "Atenciosamente,\nEquipe Financeira\n"
     "Esta é uma mensagem automática; não é necessário respondê-la."),
    ("Pedido nº {numero} confirmado: previsão de entrega em {data}",
     "Olá, {nome},\n\n"
     "Recebemos o seu pedido nº {numero} e o pagamento de R$ {valor} foi aprovado. Obrigado pela preferência!\n\n"
     "A previsão de entrega é {data}, em dias úteis, no endereço informado na compra. Assim que a transportadora "
     "coletar os produtos, você receberá o código de rastreamento por e-mail e poderá acompanhar cada etapa pelo "
     "aplicativo.\n\n"
     "Itens do pedido: uma cafeteira elétrica, dois jogos de xícaras de porcelana e um moedor de grãos manual. "
     "A nota fiscal eletrônica será enviada junto com a mercadoria e também ficará disponível na área do cliente.\n\n"
     "Precisa alterar o endereço ou cancelar a compra? Isso ainda é possível até a emissão da nota fiscal, pela "
     "opção \"Meus pedidos\". Depois disso, a devolução pode ser solicitada em até sete dias após o recebimento, "
     "sem custo, conforme o Código de Defesa do Consumidor (artigo 49).\n\n"
     "Atenciosamente,\nEquipe de Atendimento\n"
     "Esta é uma mensagem automática; não é necessário respondê-la."),
    ("Atualização da solicitação nº {numero}: análise concluída",
     "Olá, {nome},\n\n"
     "A análise da sua solicitação nº {numero}, aberta em {data}, foi concluída pela nossa equipe técnica.\n\n"
     "Verificamos as informações enviadas e a documentação anexada. A correção do cadastro já foi feita e a "
     "alteração aparecerá em todos os canais em até duas horas. Caso ainda veja os dados antigos depois desse "
     "prazo, saia da sua conta e entre novamente no aplicativo.\n\n"
     "Conforme combinado, o valor de R$ {valor} cobrado indevidamente será estornado na próxima fatura, com a "
     "descrição \"Ajuste de cobrança\". Não é necessária nenhuma ação da sua parte.\n\n"
     "Sua opinião é importante: em alguns dias você receberá uma pesquisa rápida de satisfação, com três perguntas "
     "sobre o atendimento. Se o problema voltar a acontecer, responda a esta mensagem informando o número da "
     "solicitação, para que possamos reabri-la sem que você precise explicar tudo outra vez.\n\n"
     "Atenciosamente,\nCentral de Relacionamento\n"
     "Esta é uma mensagem automática; não é necessário respondê-la."),
    ("Aviso: manutenção programada em {data}, das {hora}h às {hora_fim}h",
     "Olá, {nome},\n\n"
     "Informamos que realizaremos uma manutenção programada em nossos sistemas no dia {data}, das {hora}h às "
     "{hora_fim}h (horário de Brasília).\n\n"
     "Durante esse período, o acesso ao portal, ao aplicativo e à emissão de boletos poderá ficar indisponível ou "
     "mais lento. Pagamentos agendados, transferências programadas e débitos automáticos não serão afetados e "
     "serão processados normalmente.\n\n"
     "A manutenção é necessária para a atualização dos servidores e a instalação de melhorias de segurança, "
     "que tornarão os próximos acessos mais rápidos e estáveis. Recomendamos concluir operações urgentes antes "
     "do início da janela.\n\n"
     "Se precisar de ajuda durante a manutenção, nossa central de atendimento estará disponível pelo telefone "
     "0800 765 4321, inclusive no período da madrugada. Agradecemos a compreensão e pedimos desculpas por "
     "qualquer transtorno.\n\n"
     "Atenciosamente,\nEquipe de Operações\n"
     "Esta é uma mensagem automática; não é necessário respondê-la."),
    ("Convocação: assembleia geral ordinária do condomínio em {data}",
     "Prezado(a) {nome},\n\n"
     "Convocamos todos os condôminos para a assembleia geral ordinária do Condomínio Residencial São João, a "
     "realizar-se no dia {data}, às {hora}h em primeira chamada e às {hora_fim}h em segunda chamada, no salão de "
     "festas do bloco B.\n\n"
     "Ordem do dia:\n"
     "1. Prestação de contas do exercício anterior e aprovação do balanço;\n"
     "2. Previsão orçamentária e definição da taxa condominial, hoje de R$ {valor};\n"
     "3. Eleição do síndico, do subsíndico e do conselho fiscal;\n"
     "4. Obras de impermeabilização da cobertura e manutenção dos elevadores;\n"
     "5. Assuntos gerais.\n\n"
     "Os condôminos poderão ser representados por procuração com firma reconhecida. Lembramos que somente "
     "unidades em dia com as taxas condominiais têm direito a voto, conforme a convenção do condomínio.\n\n"
     "A ata será enviada a todos por e-mail em até dez dias. Os documentos da prestação de contas estão à "
     "disposição para consulta na administração, de segunda a sexta-feira, em horário comercial.\n\n"
     "Atenciosamente,\nAdministração do Condomínio"),
    ("Alteração de senha na sua conta em {data}",
     "Olá, {nome},\n\n"
     "A senha da sua conta foi alterada em {data}, às {hora}h, a partir de um navegador em São Paulo (SP).\n\n"
     "Se foi você, nenhuma ação é necessária: por segurança, todas as outras sessões abertas foram encerradas e "
     "será preciso entrar novamente nos demais dispositivos.\n\n"
     "Se você não reconhece essa alteração, proteja sua conta agora mesmo: use a opção \"Esqueci minha senha\" na "
     "página de acesso, escolha uma senha nova, que não tenha sido usada em outros serviços, e ative a verificação "
     "em duas etapas nas configurações de segurança.\n\n"
     "Nunca pedimos sua senha, códigos de verificação ou dados do cartão por e-mail, telefone ou mensagem. "
     "Desconfie de contatos em nosso nome que solicitem essas informações e, na dúvida, fale com a nossa central "
     "pelo número 0800 555 0123, disponível 24 horas por dia.\n\n"
     "Código de referência desta notificação: {codigo_curto}. Guarde-o caso precise falar conosco.\n\n"
     "Atenciosamente,\nEquipe de Segurança"),
]


def ascii_slug(text: str) -> str:
    """"Luíza" -> "luiza": a local part of an address, as people make them from their names."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


_FIRST_ASCII = {name: ascii_slug(name.split()[0]) for name in FIRST_NAMES}
_SURNAME_ASCII = {name: ascii_slug(name) for name in SURNAMES}


class Workload:
    """Notifications from one seeded generator; recipients numbered from `family`'s serial upwards.

    Draws with random() rather than choice()/randrange(): the seed makes millions of these, at a few times the
    speed."""

    def __init__(self, family: str, seed: int = 2026):
        self.rng = random.Random(f"{family}-{seed}")
        self.serial = SERIALS[family]

    def person(self) -> tuple[str, str]:
        """(display name, address) of a new person: the address has never been used in this run."""
        r = self.rng.random
        first, last = FIRST_NAMES[int(r() * len(FIRST_NAMES))], SURNAMES[int(r() * len(SURNAMES))]
        name = f"{first} {SURNAMES[int(r() * len(SURNAMES))]} {last}" if r() < 0.2 else f"{first} {last}"
        self.serial += 1
        address = f"{_FIRST_ASCII[first]}.{_SURNAME_ASCII[last]}{self.serial}@{DOMAINS[int(r() * len(DOMAINS))]}"
        return name, address

    def recipient(self) -> str:
        """A new recipient, two times in three with their display name ("Ana Luíza Souza <ana.souza4711@...>")."""
        name, address = self.person()
        return f"{name} <{address}>" if self.rng.random() < 0.67 else address

    def recipients(self) -> tuple[list[str], list[str]]:
        """(to, cc): one to three new recipients (six times in ten one, three two, one three), the second and third
        in Cc now and then."""
        r = self.rng.random
        draw = r()
        to, cc = [self.recipient()], []
        for _ in range(0 if draw < 0.6 else 1 if draw < 0.9 else 2):
            (cc if r() < 0.3 else to).append(self.recipient())
        return to, cc

    def subject_and_text(self, name: str | None, text: bool = True) -> tuple[str, str | None]:
        """A pt-BR subject and its text (about 1 KB; None when not `text`), addressed to `name` (its first name) or
        to the customer."""
        r = self.rng.random
        subject, body = KINDS[int(r() * len(KINDS))]
        hour, cents = 7 + int(r() * 14), 3000 + int(r() * 397000)
        values = dict(
            mes=MONTHS[int(r() * 12)], data=f"{1 + int(r() * 28):02d}/{1 + int(r() * 12):02d}/2026", hora=hour,
            hora_fim=hour + 1 + int(r() * 3), numero=100000 + int(r() * 900000),
            valor=f"{cents // 100:,}".replace(",", ".") + f",{cents % 100:02d}")
        if not text:
            return subject.format_map(values), None
        digits = f"{self.rng.getrandbits(150):046d}"[-44:]
        values.update(
            nome=name.split()[0] if name else "cliente", codigo_curto=digits[:12],
            codigo=f"{digits[:5]}.{digits[5:10]} {digits[10:15]}.{digits[15:21]} {digits[21:26]}.{digits[26:32]} "
                   f"{digits[32]} {digits[33:]}")
        return subject.format_map(values), body.format_map(values)

    def notification(self) -> dict:
        """send_notification()'s keyword arguments for a new notification: to, cc, subject, text."""
        to, cc = self.recipients()
        subject, text = self.subject_and_text(to[0].rpartition("<")[0].strip() or None)
        return dict(to=to, cc=cc, subject=subject, text=text)


# --- The API's load: a wrk script posting notifications like the ones above -----------------------------------------

WRK_POST = """-- Generated by bench/workload.py: POST /api/v1/notifications, each request to new recipients.
local names = {%(names)s}
local domains = {%(domains)s}
local bodies = {%(bodies)s}
local counts = {1, 1, 2, 1, 1, 3, 2, 1, 1, 2}
local serial = %(serial)d
local sent = 0

function setup(thread)
  -- Each wrk thread numbers its recipients in its own range: more threads would not repeat an address.
  thread:set("range", %(per_thread)d * (thread_count or 0))
  thread_count = (thread_count or 0) + 1
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"

request = function()
  sent = sent + 1
  local recipients = {}
  for i = 1, counts[(sent %% #counts) + 1] do
    serial = serial + 1
    local n = serial + (range or 0)
    local person = names[(n %% #names) + 1]
    local address = person[2] .. n .. "@" .. domains[(n %% #domains) + 1]
    if n %% 3 == 0 then
      recipients[i] = '"' .. address .. '"'
    else
      recipients[i] = '"' .. person[1] .. ' <' .. address .. '>"'
    end
  end
  local body = bodies[(sent %% #bodies) + 1]
  return wrk.format(nil, nil, nil, '{"to": [' .. table.concat(recipients, ", ") .. '], ' .. body .. '}')
end
"""


def _lua_string(text: str) -> str:
    """A Lua long string holding text byte for byte (no escapes are read inside [==[ ]==])."""
    if "]==]" in text:
        raise ValueError("text holds the long string's end")
    return f"[==[{text}]==]"


def wrk_post_script(token: str, variants: int = 24) -> str:
    """The wrk script of the API figure: recipients numbered from SERIALS["api"] (display names two times in three),
    subjects and texts from `variants` notifications of this module, JSON-escaped by json.dumps."""
    workload = Workload("api")
    people = []
    for first in FIRST_NAMES:
        last = workload.rng.choice(SURNAMES)
        display = json.dumps(f"{first} {last}", ensure_ascii=False)[1:-1]
        people.append("{%s, %s}" % (_lua_string(display), _lua_string(f"{_FIRST_ASCII[first]}.{_SURNAME_ASCII[last]}")))
    bodies = []
    for _ in range(variants):
        subject, text = workload.subject_and_text(workload.rng.choice(FIRST_NAMES))
        fields = json.dumps({"subject": subject, "text": text}, ensure_ascii=False)[1:-1]
        bodies.append(_lua_string(fields))
    return WRK_POST % dict(names=", ".join(people), domains=", ".join(_lua_string(d) for d in DOMAINS),
                           bodies=",\n  ".join(bodies), serial=SERIALS["api"], per_thread=10_000_000, token=token)
